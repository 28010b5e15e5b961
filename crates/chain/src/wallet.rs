//! The operator's hotkey, read from a btcli wallet (`<path>/<wallet>/hotkeys/<hotkey>`).
//!
//! A keyfile is JSON holding `secretPhrase`, `secretSeed` and/or `privateKey`; whichever is
//! present is turned into an sr25519 keypair and checked against the file's own public key,
//! so a corrupt or hand-edited file fails loudly instead of signing as someone else. Files
//! encrypted by btcli (`$NACL`: argon2i + XSalsa20-Poly1305) open with a password; the two
//! legacy formats get a clear error. No secret is ever formatted: `Hotkey`'s `Debug` shows
//! the address only, and the secret bytes are zeroed when dropped.

use std::path::{Path, PathBuf};

use schnorrkel::{ExpansionMode, MiniSecretKey, SecretKey};
use subxt::utils::{AccountId32, MultiSignature};
use subxt::SubstrateConfig;
use zeroize::Zeroizing;

/// `$NACL` key derivation: libsodium's argon2i "sensitive" limits and btcli's fixed salt.
const NACL_PREFIX: &[u8] = b"$NACL";
const NACL_SALT: [u8; 16] = [
    0x13, 0x71, 0x83, 0xdf, 0xf1, 0x5a, 0x09, 0xbc, 0x9c, 0x90, 0xb5, 0x51, 0x87, 0x39, 0xe9, 0xb1,
];
const NACL_MEMORY_KIB: u32 = 512 * 1024;
const NACL_PASSES: u32 = 8;

/// Where the keyfile of `hotkey` in `wallet` lives under `wallets_dir` (`~` expanded).
pub fn hotkey_path(wallets_dir: &str, wallet: &str, hotkey: &str) -> PathBuf {
    let base = match wallets_dir.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(wallets_dir),
    };
    base.join(wallet).join("hotkeys").join(hotkey)
}

/// Why a hotkey could not be loaded. Never carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("cannot read hotkey file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hotkey file {0} is encrypted ($NACL); supply its password (CACHEON_WALLET_PASSWORD, or btcli's BT_PW_ variable)")]
    NeedsPassword(PathBuf),
    #[error("wrong password for the encrypted hotkey file {0}")]
    WrongPassword(PathBuf),
    #[error("hotkey file {path} uses the legacy {format} encryption, which is not supported; re-create it with a current btcli (`btcli wallet regen-hotkey`)")]
    LegacyEncryption { path: PathBuf, format: &'static str },
    #[error("hotkey file {path} is not a keyfile: {detail}")]
    Malformed { path: PathBuf, detail: String },
    #[error("hotkey file {0} holds no secret (secretPhrase, secretSeed or privateKey); is it a public-key-only file?")]
    NoSecret(PathBuf),
    #[error("hotkey file {0} holds an ed25519 key; hotkeys are sr25519")]
    NotSr25519(PathBuf),
    #[error(
        "hotkey file {path}: the secret gives address {derived}, but the file says {declared}"
    )]
    Mismatch {
        path: PathBuf,
        derived: String,
        declared: String,
    },
}

/// A loaded sr25519 hotkey, ready to sign extrinsics.
pub struct Hotkey {
    keypair: schnorrkel::Keypair,
    account: AccountId32,
}

impl std::fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hotkey")
            .field("address", &self.account.to_string())
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keyfile {
    secret_phrase: Option<String>,
    secret_seed: Option<String>,
    private_key: Option<String>,
    public_key: Option<String>,
    ss58_address: Option<String>,
    crypto_type: Option<serde_json::Value>,
}

impl Drop for Keyfile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for s in [
            &mut self.secret_phrase,
            &mut self.secret_seed,
            &mut self.private_key,
        ]
        .into_iter()
        .flatten()
        {
            s.zeroize();
        }
    }
}

impl Hotkey {
    /// Loads a keyfile. `password` opens a `$NACL` file; when it is `None`, btcli's
    /// `BT_PW_<path>` variable is tried.
    pub fn load(path: &Path, password: Option<&str>) -> Result<Self, WalletError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| WalletError::Io {
            path: path.to_owned(),
            source,
        })?);
        let from_env = if password.is_none() {
            btcli_env_password(path)
        } else {
            None
        };
        let password = password.or(from_env.as_deref().map(|p| p.as_str()));
        Self::from_keyfile(path, &bytes, password)
    }

    /// Parses keyfile bytes (`path` names the file in errors).
    pub fn from_keyfile(
        path: &Path,
        bytes: &[u8],
        password: Option<&str>,
    ) -> Result<Self, WalletError> {
        let plain = if bytes.starts_with(NACL_PREFIX) {
            let password = password.ok_or_else(|| WalletError::NeedsPassword(path.to_owned()))?;
            nacl_decrypt(path, &bytes[NACL_PREFIX.len()..], password)?
        } else if bytes.starts_with(b"$ANSIBLE_VAULT") {
            return Err(WalletError::LegacyEncryption {
                path: path.to_owned(),
                format: "Ansible vault",
            });
        } else if bytes.starts_with(b"gAAAAA") {
            return Err(WalletError::LegacyEncryption {
                path: path.to_owned(),
                format: "Fernet",
            });
        } else {
            Zeroizing::new(bytes.to_vec())
        };
        let malformed = |detail: String| WalletError::Malformed {
            path: path.to_owned(),
            detail,
        };
        let file: Keyfile = serde_json::from_slice(&plain).map_err(|e| {
            // Position only: serde's message can quote the (secret) input.
            malformed(format!(
                "not keyfile JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if file
            .crypto_type
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            == Some(0)
        {
            return Err(WalletError::NotSr25519(path.to_owned()));
        }
        let keypair = if let Some(phrase) = file.secret_phrase.as_deref() {
            let seed =
                seed_from_phrase(phrase).map_err(|e| malformed(format!("secretPhrase: {e}")))?;
            mini_secret_keypair(&seed).map_err(|e| malformed(format!("secretPhrase: {e}")))?
        } else if let Some(seed) = file.secret_seed.as_deref() {
            let seed = Zeroizing::new(
                hex32(seed).ok_or_else(|| malformed("secretSeed is not 32 hex bytes".into()))?,
            );
            mini_secret_keypair(&seed).map_err(|e| malformed(format!("secretSeed: {e}")))?
        } else if let Some(key) = file.private_key.as_deref() {
            let raw = Zeroizing::new(
                hex::decode(key.trim_start_matches("0x"))
                    .map_err(|_| malformed("privateKey is not hex".into()))?,
            );
            SecretKey::from_bytes(&raw)
                .map_err(|_| malformed("privateKey is not a 64-byte sr25519 secret".into()))?
                .to_keypair()
        } else {
            return Err(WalletError::NoSecret(path.to_owned()));
        };
        let account = AccountId32(keypair.public.to_bytes());
        let declared_key = file.public_key.as_deref().and_then(hex32);
        let declared_address = file.ss58_address.as_deref();
        let mismatch = declared_key.is_some_and(|k| k != account.0)
            || declared_address.is_some_and(|a| a != account.to_string());
        if mismatch {
            return Err(WalletError::Mismatch {
                path: path.to_owned(),
                derived: account.to_string(),
                declared: declared_address.map_or_else(
                    || format!("0x{}", hex::encode(declared_key.unwrap_or_default())),
                    str::to_owned,
                ),
            });
        }
        Ok(Self { keypair, account })
    }

    /// The hotkey's account (its SS58 address with `to_string()`).
    pub fn account_id(&self) -> AccountId32 {
        self.account
    }

    /// An sr25519 signature in Substrate's signing context.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        let context = schnorrkel::signing_context(b"substrate");
        self.keypair.sign(context.bytes(message)).to_bytes()
    }
}

impl subxt::transactions::Signer<SubstrateConfig> for Hotkey {
    fn account_id(&self) -> AccountId32 {
        self.account
    }

    fn sign(&self, signer_payload: &[u8]) -> MultiSignature {
        MultiSignature::Sr25519(self.sign_bytes(signer_payload))
    }
}

/// Substrate's rule: the mini secret is expanded the ed25519 way.
fn mini_secret_keypair(seed: &[u8; 32]) -> Result<schnorrkel::Keypair, String> {
    MiniSecretKey::from_bytes(seed)
        .map(|mini| mini.expand_to_keypair(ExpansionMode::Ed25519))
        .map_err(|_| "not a 32-byte mini secret".to_owned())
}

/// Substrate's BIP39 seed: PBKDF2-HMAC-SHA512 over the phrase's *entropy* (not its words),
/// salt "mnemonic", 2048 rounds, first 32 bytes. This is the `secretSeed` btcli writes.
fn seed_from_phrase(phrase: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    let mnemonic = subxt_signer::bip39::Mnemonic::parse_in_normalized(
        subxt_signer::bip39::Language::English,
        phrase,
    )
    .map_err(|e| format!("not a BIP39 phrase ({e})"))?;
    let entropy = Zeroizing::new(mnemonic.to_entropy());
    let mut out = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(&entropy, b"mnemonic", 2048, out.as_mut());
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&out[..32]);
    Ok(seed)
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim_start_matches("0x"), &mut out).ok()?;
    Some(out)
}

/// `$NACL` body: 24-byte nonce, then the secretbox (tag + ciphertext).
fn nacl_decrypt(
    path: &Path,
    body: &[u8],
    password: &str,
) -> Result<Zeroizing<Vec<u8>>, WalletError> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let malformed = |detail: &str| WalletError::Malformed {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    if body.len() < 24 + 16 {
        return Err(malformed("$NACL file is too short"));
    }
    let (nonce, sealed) = body.split_at(24);
    let params = argon2::Params::new(NACL_MEMORY_KIB, NACL_PASSES, 1, Some(32))
        .map_err(|_| malformed("argon2 parameters"))?;
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    kdf.hash_password_into(password.as_bytes(), &NACL_SALT, key.as_mut())
        .map_err(|_| malformed("argon2 key derivation failed"))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(nonce.into(), sealed)
        .map(Zeroizing::new)
        .map_err(|_| WalletError::WrongPassword(path.to_owned()))
}

/// btcli's password variable for a keyfile: `BT_PW_` + the path upper-cased with `/` and
/// `.` as `_`; its value is base64 of the password XORed with the variable's own name.
fn btcli_env_password(path: &Path) -> Option<Zeroizing<String>> {
    let name = btcli_env_name(path);
    let value = Zeroizing::new(std::env::var(&name).ok()?);
    use base64::Engine;
    let mixed = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?,
    );
    let key = name.as_bytes();
    let plain: Vec<u8> = mixed
        .iter()
        .zip(key.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect();
    String::from_utf8(plain).ok().map(Zeroizing::new)
}

fn btcli_env_name(path: &Path) -> String {
    let text = path
        .to_string_lossy()
        .replace(['/', '.'], "_")
        .to_uppercase();
    format!("BT_PW_{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    const SEED: &str = "0x4ed8d4b17698ddeaa1f1559f152f87b5d472f725ca86d341bd0276f1b61197e2";
    const ADDRESS: &str = "5EPCUjPxiHAcNooYipQFWr9NmmXJKpNG5RhcntXwbtUySrgH";

    #[test]
    fn phrase_gives_btcli_seed_and_matches_subxt_signer() {
        let seed = seed_from_phrase(PHRASE).expect("phrase");
        assert_eq!(format!("0x{}", hex::encode(*seed)), SEED);
        let ours = mini_secret_keypair(&seed).expect("keypair");
        let mnemonic = subxt_signer::bip39::Mnemonic::parse(PHRASE).expect("phrase");
        let theirs = subxt_signer::sr25519::Keypair::from_phrase(&mnemonic, None).expect("keypair");
        assert_eq!(ours.public.to_bytes(), theirs.public_key().0);
        assert_eq!(AccountId32(ours.public.to_bytes()).to_string(), ADDRESS);
    }

    #[test]
    fn env_name_follows_btcli() {
        assert_eq!(
            btcli_env_name(Path::new(
                "/root/.bittensor/wallets/default/hotkeys/default"
            )),
            "BT_PW__ROOT__BITTENSOR_WALLETS_DEFAULT_HOTKEYS_DEFAULT"
        );
    }
}
