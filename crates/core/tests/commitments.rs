//! Decoder robustness (proptest) and image/digest verdicts on real-world references.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use cacheon_core::{decode_commitment, CommitmentError, Digest, ImageRef, ReferenceError};
use parity_scale_codec::Encode;
use proptest::prelude::*;

const DIGEST: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn payload(image: &str) -> String {
    serde_json::json!({ "image": image, "digest": DIGEST }).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_commitment(&raw);
    }

    #[test]
    fn decoder_never_panics_on_hex_and_scale_lookalikes(
        body in "(0x)?[0-9a-fA-F{}\":, ]{0,200}",
        prefix in proptest::option::of(any::<u8>()),
    ) {
        let mut raw = Vec::new();
        raw.extend(prefix);
        raw.extend(body.as_bytes());
        let _ = decode_commitment(&raw);
    }

    #[test]
    fn any_valid_payload_survives_every_wrapping(
        repo in "[a-z0-9]{1,20}(/[a-z0-9]{1,12}){0,2}",
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        layers in 0usize..=3,
        scale in any::<bool>(),
    ) {
        let image = match &tag { Some(t) => format!("{repo}:{t}"), None => repo.clone() };
        let mut raw = payload(&image).into_bytes();
        for _ in 0..layers {
            raw = format!("0x{}", hex::encode(&raw)).into_bytes();
        }
        if scale {
            raw = String::from_utf8(raw).unwrap().encode();
        }
        let c = decode_commitment(&raw).unwrap();
        prop_assert_eq!(c.image.as_str(), image.as_str());
        prop_assert_eq!(c.digest.as_str(), DIGEST);
    }

    #[test]
    fn image_parse_never_panics(s in "\\PC{0,300}") {
        let _ = ImageRef::parse(&s);
        let _ = Digest::parse(&s);
    }
}

#[test]
fn real_world_image_references() {
    use ReferenceError::*;
    let long_path = format!("ghcr.io/{}/x", "a".repeat(250));
    let cases: &[(&str, Result<(), ReferenceError>)] = &[
        ("docker.io/library/x", Ok(())),
        ("docker.io/library/ubuntu:24.04", Ok(())),
        ("ubuntu", Ok(())),
        ("library/ubuntu:latest", Ok(())),
        ("ghcr.io/org/x:tag", Ok(())),
        ("ghcr.io/my-org/inference_server:v1.2.3-rc.1", Ok(())),
        ("registry.local:5000/ns/x:v1", Ok(())),
        ("localhost:5000/miner", Ok(())),
        ("localhost/miner:dev", Ok(())),
        ("127.0.0.1:5000/a/b/c:d", Ok(())),
        ("nvcr.io/nvidia/tritonserver:24.05-py3", Ok(())),
        ("a__b/c--d/e.f:TAG_ok", Ok(())),
        ("GHCR.IO/org/x:tag", Ok(())), // hostnames are case-insensitive
        ("ghcr.io/Org/x:tag", Err(ImageGrammar)),
        ("Ubuntu", Err(ImageGrammar)),
        ("ghcr.io/org/x:Tag", Ok(())),
        ("ghcr.io/org/x y:tag", Err(ImageGrammar)),
        (" ghcr.io/org/x", Err(ImageGrammar)),
        ("ghcr.io/org/x:tag ", Err(ImageGrammar)),
        (
            "ghcr.io/org/x@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            Err(EmbeddedDigest),
        ),
        ("ghcr.io/org/x:tag@sha256:abc", Err(EmbeddedDigest)),
        (&long_path, Err(ImageTooLong)),
        ("", Err(EmptyImage)),
        ("x;rm -rf /", Err(ImageGrammar)),
        ("x:$(reboot)", Err(ImageGrammar)),
        ("x`id`", Err(ImageGrammar)),
        ("x|y", Err(ImageGrammar)),
        ("x&&y", Err(ImageGrammar)),
        ("org/x:tag\n", Err(ImageGrammar)),
        ("../etc/passwd", Err(ImageGrammar)),
        ("org//x", Err(ImageGrammar)),
        ("org/x/", Err(ImageGrammar)),
        ("-org/x", Err(ImageGrammar)),
        ("org/x:", Err(ImageGrammar)),
        ("org/x:.tag", Err(ImageGrammar)),
        (&format!("org/x:{}", "t".repeat(129)), Err(ImageGrammar)),
        ("registry.local:port/x", Err(ImageGrammar)),
        ("-bad.host/x", Err(ImageGrammar)),
        ("org/x:tag:tag", Err(ImageGrammar)),
    ];
    for (input, want) in cases {
        let got = ImageRef::parse(input).map(|_| ());
        assert_eq!(&got, want, "image {input:?}");
        // And through the full commitment path, with the miner-facing code.
        let decoded = decode_commitment(payload(input).as_bytes()).map(|_| ());
        assert_eq!(
            decoded,
            want.clone().map_err(CommitmentError::Image),
            "commitment {input:?}"
        );
    }
}

#[test]
fn digests() {
    let hex64 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let ok = format!("sha256:{hex64}");
    let bad = [
        format!("sha256:{}", hex64.to_uppercase()),
        format!("sha512:{hex64}"),
        format!("sha256:{}", &hex64[1..]),
        format!("sha256:{hex64}0"),
        format!(" sha256:{hex64}"),
        format!("sha256:{hex64}\n"),
        hex64.to_string(),
        format!("sha256:{}g", &hex64[1..]),
        String::new(),
    ];
    assert!(Digest::parse(&ok).is_ok());
    for b in bad {
        assert_eq!(
            Digest::parse(&b),
            Err(ReferenceError::DigestFormat),
            "{b:?}"
        );
    }
}

#[test]
fn unknown_fields_are_ignored_but_types_are_strict() {
    let extra = format!(r#"{{"image":"a/b","digest":"{DIGEST}","v":2,"extra":{{"x":[1]}}}}"#);
    assert!(decode_commitment(extra.as_bytes()).is_ok());
    let numeric = format!(r#"{{"image":7,"digest":"{DIGEST}"}}"#);
    assert_eq!(
        decode_commitment(numeric.as_bytes()),
        Err(CommitmentError::MissingImage)
    );
}
