//! Loading btcli hotkey files: every secret field, the encrypted `$NACL` format (a vector
//! made by bittensor-wallet 4.1.1, password `testpassword`), and the ways a file can be wrong.

mod common;

use std::path::Path;

use cacheon_chain::{Hotkey, WalletError};
use schnorrkel::{ExpansionMode, MiniSecretKey};

const PHRASE: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const SEED: &str = "0x4ed8d4b17698ddeaa1f1559f152f87b5d472f725ca86d341bd0276f1b61197e2";
const ADDRESS: &str = "5EPCUjPxiHAcNooYipQFWr9NmmXJKpNG5RhcntXwbtUySrgH";
const PUBLIC: &str = "0x66933bd1f37070ef87bd1198af3dacceb095237f803f3d32b173e6b425ed7972";

fn load(json: &str) -> Result<Hotkey, WalletError> {
    Hotkey::from_keyfile(Path::new("test-hotkey"), json.as_bytes(), None)
}

fn private_key_hex() -> String {
    let seed = hex::decode(&SEED[2..]).expect("hex");
    let secret = MiniSecretKey::from_bytes(&seed)
        .expect("seed")
        .expand(ExpansionMode::Ed25519);
    format!("0x{}", hex::encode(secret.to_bytes()))
}

#[test]
fn every_secret_field_gives_the_same_hotkey() {
    let files = [
        format!(
            r#"{{"secretPhrase":"{PHRASE}","ss58Address":"{ADDRESS}","publicKey":"{PUBLIC}","cryptoType":1}}"#
        ),
        format!(
            r#"{{"secretSeed":"{SEED}","accountId":"{PUBLIC}","publicKey":"{PUBLIC}","ss58Address":"{ADDRESS}","secretPhrase":null,"privateKey":null}}"#
        ),
        format!(
            r#"{{"privateKey":"{}","ss58Address":"{ADDRESS}"}}"#,
            private_key_hex()
        ),
    ];
    for file in &files {
        let hotkey = load(file).unwrap_or_else(|e| panic!("{e}: {file}"));
        assert_eq!(hotkey.account_id().to_string(), ADDRESS);
        // It signs as that account: the signature verifies under the declared public key.
        let signature = hotkey.sign_bytes(b"payload");
        let public = schnorrkel::PublicKey::from_bytes(&hex::decode(&PUBLIC[2..]).expect("hex"))
            .expect("key");
        let signature = schnorrkel::Signature::from_bytes(&signature).expect("sig");
        public
            .verify(
                schnorrkel::signing_context(b"substrate").bytes(b"payload"),
                &signature,
            )
            .expect("signature verifies");
        let debug = format!("{hotkey:?}");
        assert!(
            debug.contains(ADDRESS) && !debug.contains(&SEED[2..10]),
            "{debug}"
        );
    }
}

#[test]
fn wrong_or_missing_content_is_a_clear_error_without_secrets() {
    let other = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"{{"secretSeed":"{SEED}","ss58Address":"{other}"}}"#),
            "the file says 5Grwva",
        ),
        (
            format!(r#"{{"ss58Address":"{ADDRESS}","publicKey":"{PUBLIC}"}}"#),
            "holds no secret",
        ),
        (
            r#"{"secretSeed":"0x1234"}"#.to_owned(),
            "secretSeed is not 32 hex bytes",
        ),
        (
            r#"{"secretPhrase":"correct horse battery staple"}"#.to_owned(),
            "secretPhrase",
        ),
        (
            format!(r#"{{"secretSeed":"{SEED}","cryptoType":0}}"#),
            "ed25519",
        ),
        (format!(r#"{{"secretSeed": {SEED}}}"#), "not keyfile JSON"),
        (
            "$ANSIBLE_VAULT;1.1;AES256\n6162".to_owned(),
            "legacy Ansible vault",
        ),
        ("gAAAAABh-fernet".to_owned(), "legacy Fernet"),
    ];
    for (file, expected) in cases {
        let err = load(&file).expect_err(&file).to_string();
        assert!(
            err.contains(expected),
            "{err:?} should mention {expected:?}"
        );
        assert!(!err.contains(&SEED[2..]), "a secret leaked into {err:?}");
    }
}

#[test]
fn nacl_encrypted_keyfile_opens_with_its_password_only() {
    let bytes = std::fs::read(common::fixture("nacl-hotkey.bin")).expect("fixture");
    assert!(bytes.starts_with(b"$NACL"));
    let path = Path::new("nacl-hotkey");
    let err = Hotkey::from_keyfile(path, &bytes, None).expect_err("needs a password");
    assert!(matches!(err, WalletError::NeedsPassword(_)), "{err}");
    let err = Hotkey::from_keyfile(path, &bytes, Some("not-it")).expect_err("wrong password");
    assert!(matches!(err, WalletError::WrongPassword(_)), "{err}");
    let hotkey = Hotkey::from_keyfile(path, &bytes, Some("testpassword")).expect("opens");
    assert_eq!(hotkey.account_id().to_string(), ADDRESS);
}

#[test]
fn load_reads_the_wallet_layout_and_btcli_password_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wallets = dir.path().to_str().expect("utf-8 path");
    let path = cacheon_chain::hotkey_path(wallets, "coldkey-a", "hot-1");
    assert!(path.ends_with("coldkey-a/hotkeys/hot-1"));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &path,
        std::fs::read(common::fixture("nacl-hotkey.bin")).expect("fixture"),
    )
    .expect("write");

    // btcli's convention: BT_PW_<PATH> = base64(password XOR variable name).
    let name = format!(
        "BT_PW_{}",
        path.to_string_lossy()
            .replace(['/', '.'], "_")
            .to_uppercase()
    );
    let mixed: Vec<u8> = b"testpassword"
        .iter()
        .zip(name.as_bytes().iter().cycle())
        .map(|(p, k)| p ^ k)
        .collect();
    use base64::Engine;
    std::env::set_var(
        &name,
        base64::engine::general_purpose::STANDARD.encode(mixed),
    );
    let hotkey = Hotkey::load(&path, None).expect("password from BT_PW_");
    assert_eq!(hotkey.account_id().to_string(), ADDRESS);
    std::env::remove_var(&name);

    let missing = Hotkey::load(&dir.path().join("nope"), None).expect_err("missing file");
    assert!(
        missing.to_string().contains("cannot read hotkey file"),
        "{missing}"
    );
}
