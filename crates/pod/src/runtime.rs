//! Runtime floors: the Docker engine and what runs a miner's container under it must be
//! recent and confining. Read from the engine's own `/version` and `/info` (what `docker version` and `docker
//! info` print), so a test feeds the same parsing the same documents:
//!
//! - the engine at least `min_engine`;
//! - runc and containerd at least the floor of their release line (each floor names the
//!   escape it closes); a line older than every floor is refused whole;
//! - seccomp active with a profile (not `unconfined`);
//! - a Linux security module confining containers (AppArmor, or SELinux), unless the
//!   operator says the machine has none and accepts it.

use bollard::models::{SystemInfo, SystemVersion};

use crate::safety::{at_least, check_version, parse_version, SafetyError, SafetyRequirements};

/// runc: 1.1.12 closed the leaked-descriptor escape (CVE-2024-21626); 1.2.8, 1.3.3 and
/// 1.4.0 the mount races of CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881, which 1.1
/// never got.
pub const RUNC_FLOORS: &[&str] = &["1.2.8", "1.3.3", "1.4.0"];
/// containerd: 1.6.38, 1.7.27 and 2.0.4 stop a large UID/GID overflowing to root in a
/// container's user (CVE-2024-40635).
pub const CONTAINERD_FLOORS: &[&str] = &["1.6.38", "1.7.27", "2.0.4"];

/// What the engine says runs its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub runc: Option<String>,
    pub containerd: Option<String>,
    /// `name=seccomp,profile=default`, `name=apparmor`, ... as `/info` lists them.
    pub security_options: Vec<String>,
}

impl Runtime {
    pub fn from_engine(version: &SystemVersion, info: &SystemInfo) -> Self {
        let component = |name: &str| {
            version
                .components
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
                .map(|c| c.version.clone())
        };
        let commit = |c: &Option<bollard::models::Commit>| c.as_ref().and_then(|c| c.id.clone());
        Self {
            runc: component("runc").or_else(|| commit(&info.runc_commit)),
            containerd: component("containerd").or_else(|| commit(&info.containerd_commit)),
            security_options: info.security_options.clone().unwrap_or_default(),
        }
    }

    /// The named security option's fields (`name=seccomp,profile=default` → profile).
    fn option(&self, name: &str) -> Option<Vec<(String, String)>> {
        self.security_options.iter().find_map(|o| {
            let fields: Vec<(String, String)> = o
                .split(',')
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            fields
                .iter()
                .any(|(k, v)| k == "name" && v == name)
                .then_some(fields)
        })
    }
}

/// `found` passes when it is at least the floor of its own `major.minor` line, or newer
/// than every line with a floor.
pub fn meets_floor(found: &str, floors: &[String]) -> Option<bool> {
    let version = parse_version(found)?;
    let line = |v: &[u64]| {
        (
            v.first().copied().unwrap_or(0),
            v.get(1).copied().unwrap_or(0),
        )
    };
    let mine = line(&version);
    let mut newest = None;
    for floor in floors {
        let f = parse_version(floor)?;
        if line(&f) == mine {
            return at_least(found, floor);
        }
        newest = newest.max(Some(line(&f)));
    }
    Some(newest.is_some_and(|n| mine > n) || floors.is_empty())
}

/// Checks the runtime against the floors.
pub fn check(rt: &Runtime, req: &SafetyRequirements) -> Result<(), SafetyError> {
    let floor = |what: &'static str, found: &Option<String>, floors: &[String], why| {
        let found = found.as_deref().ok_or_else(|| SafetyError::Unknown {
            what,
            detail: "the engine does not name it".into(),
        })?;
        match meets_floor(found, floors) {
            Some(true) => Ok(()),
            Some(false) => Err(SafetyError::TooOld {
                what,
                found: found.to_string(),
                min: floors.join(" / "),
                why,
            }),
            None => Err(SafetyError::Unknown {
                what,
                detail: format!("`{found}` is not a version"),
            }),
        }
    };
    floor(
        "runc",
        &rt.runc,
        &req.min_runc,
        "container escapes (CVE-2024-21626; CVE-2025-31133, -52565, -52881)",
    )?;
    floor(
        "containerd",
        &rt.containerd,
        &req.min_containerd,
        "a container user overflowing to root (CVE-2024-40635)",
    )?;
    match rt.option("seccomp") {
        None => {
            return Err(SafetyError::Unconfined(
                "seccomp is not active in the engine".into(),
            ))
        }
        Some(fields) => {
            if fields
                .iter()
                .any(|(k, v)| k == "profile" && v == "unconfined")
            {
                return Err(SafetyError::Unconfined(
                    "the engine's default seccomp profile is `unconfined`".into(),
                ));
            }
        }
    }
    let lsm = rt.option("apparmor").is_some() || rt.option("selinux").is_some();
    if !lsm && !req.allow_no_lsm {
        return Err(SafetyError::Unconfined(
            "neither AppArmor nor SELinux confines containers (--allow-no-lsm accepts that)".into(),
        ));
    }
    Ok(())
}

/// The engine's own version against its minimum, then the runtime under it against its
/// floors: one read of `/version` and `/info` for both.
pub async fn check_engine(
    docker: &bollard::Docker,
    req: &SafetyRequirements,
) -> Result<Runtime, SafetyError> {
    let unknown = |e: bollard::errors::Error| SafetyError::Unknown {
        what: "Docker engine",
        detail: e.to_string(),
    };
    let version = docker.version().await.map_err(unknown)?;
    check_version(
        "Docker engine",
        version.version.as_deref().unwrap_or_default(),
        &req.min_engine,
        "internal networks forward DNS out (CVE-2024-29018)",
    )?;
    let info = docker.info().await.map_err(unknown)?;
    let rt = Runtime::from_engine(&version, &info);
    check(&rt, req)?;
    Ok(rt)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `/version` and `/info` of Debian 12's docker.io 20.10.24 (this project's test
    /// machines), as the engine serves them.
    const VERSION: &str = include_str!("../tests/fixtures/docker-version.json");
    const INFO: &str = include_str!("../tests/fixtures/docker-info.json");

    fn floors(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn engine(version: &str, info: &str) -> Runtime {
        Runtime::from_engine(
            &serde_json::from_str(version).unwrap(),
            &serde_json::from_str(info).unwrap(),
        )
    }

    fn lenient() -> SafetyRequirements {
        SafetyRequirements {
            min_runc: floors(&["1.1.5"]),
            min_containerd: floors(&["1.6.20"]),
            allow_no_lsm: true,
            ..SafetyRequirements::default()
        }
    }

    #[test]
    fn floors_go_by_release_line() {
        let f = floors(RUNC_FLOORS);
        assert_eq!(meets_floor("1.1.12", &f), Some(false));
        assert_eq!(meets_floor("1.2.7", &f), Some(false));
        assert_eq!(meets_floor("1.2.8", &f), Some(true));
        assert_eq!(meets_floor("1.3.2", &f), Some(false));
        assert_eq!(meets_floor("1.3.3", &f), Some(true));
        assert_eq!(meets_floor("1.5.0", &f), Some(true));
        assert_eq!(meets_floor("1.1.5+ds1", &f), Some(false));
        assert_eq!(meets_floor("garbage", &f), None);
    }

    #[test]
    fn the_real_engine_documents_are_read_and_judged() {
        let rt = engine(VERSION, INFO);
        assert_eq!(rt.runc.as_deref(), Some("1.1.5+ds1"));
        assert_eq!(rt.containerd.as_deref(), Some("1.6.20~ds1"));
        // With the defaults, Debian 12's runc 1.1.5 is refused.
        let err = check(&rt, &SafetyRequirements::default()).unwrap_err();
        assert!(
            matches!(err, SafetyError::TooOld { what: "runc", .. }),
            "{err}"
        );
        println!("refused: {err}");
        // Floors the operator lowered (and no LSM accepted) pass.
        check(&rt, &lenient()).unwrap();
        // Without the operator's word, no AppArmor or SELinux is refused.
        let strict_lsm = SafetyRequirements {
            allow_no_lsm: false,
            ..lenient()
        };
        assert!(matches!(
            check(&rt, &strict_lsm),
            Err(SafetyError::Unconfined(_))
        ));
    }

    #[test]
    fn an_old_runc_and_an_unconfined_seccomp_are_refused() {
        let old = VERSION.replace("\"1.1.5+ds1\"", "\"1.1.11\"");
        let err = check(&engine(&old, INFO), &SafetyRequirements::default()).unwrap_err();
        assert!(
            matches!(err, SafetyError::TooOld { what: "runc", .. }),
            "{err}"
        );
        println!("refused: {err}");

        let unconfined = INFO.replace("profile=default", "profile=unconfined");
        let err = check(&engine(VERSION, &unconfined), &lenient()).unwrap_err();
        assert!(matches!(err, SafetyError::Unconfined(_)), "{err}");
        println!("refused: {err}");

        let no_seccomp = INFO.replace("name=seccomp,profile=default", "name=cgroupns");
        assert!(matches!(
            check(&engine(VERSION, &no_seccomp), &lenient()),
            Err(SafetyError::Unconfined(_))
        ));

        // A current runtime with AppArmor passes the defaults.
        let current = VERSION
            .replace("\"1.1.5+ds1\"", "\"1.3.3\"")
            .replace("\"1.6.20~ds1\"", "\"1.7.27\"");
        let apparmor = INFO.replace(
            "\"name=seccomp,profile=default\"",
            "\"name=apparmor\",\"name=seccomp,profile=builtin\"",
        );
        check(&engine(&current, &apparmor), &SafetyRequirements::default()).unwrap();
    }
}
