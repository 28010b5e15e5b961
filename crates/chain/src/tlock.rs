//! Timelock encryption to a drand round, byte-compatible with the `tle` scheme the subtensor
//! chain decrypts (Boneh-Franklin FullIdent on BLS12-381 with the identity in G1, as drand
//! quicknet signs, and an AES-256-GCM body). Written here on arkworks primitives; the tests
//! prove it interoperates with PyPI's `bittensor-drand`, which wraps the chain's own code.
//!
//! Ciphertext layout (arkworks compressed serialization; every `Vec` is a u64 LE length):
//!
//! ```text
//! U: G2 compressed (96) | V: Vec<u8> (32) | W: Vec<u8> (32)
//! | body: Vec<u8> = [ciphertext+tag: Vec<u8> | nonce: Vec<u8> (12)] | suite: Vec<u8> = "AES_GCM_"
//! ```
//!
//! The 32-byte IBE message is the AES key. Decryption re-derives `r` from the recovered
//! `sigma` and the key and checks `U == r·G2` (the Fujisaki-Okamoto check), so a tampered
//! header or a wrong round's signature is refused, not turned into garbage.

use aes_gcm::aead::{Aead, KeyInit};
use ark_bls12_381::{Bls12_381, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::hashing::curve_maps::wb::WBMap;
use ark_ec::hashing::map_to_curve_hasher::MapToCurveBasedHasher;
use ark_ec::hashing::HashToCurve;
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, PrimeGroup};
use ark_ff::field_hashers::DefaultFieldHasher;
use ark_ff::PrimeField;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// The hash-to-curve suite drand quicknet signs with (RFC 9380, G1).
const DST: &[u8] = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";
const SUITE: &[u8] = b"AES_GCM_";
const G2_BYTES: usize = 96;
const NONCE_BYTES: usize = 12;
/// Largest plaintext we accept to decrypt; weights commits are a few hundred bytes and the
/// chain caps a commit at 5000.
const MAX_CIPHERTEXT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlockError {
    #[error("not a valid BLS12-381 {0} point")]
    BadPoint(&'static str),
    #[error("malformed timelock ciphertext: {0}")]
    Malformed(&'static str),
    #[error("the signature does not open this ciphertext (wrong round, or tampered header)")]
    WrongKey,
    #[error("the ciphertext body does not authenticate (tampered)")]
    BadBody,
    #[error("hashing the round to G1 failed")]
    HashToCurve,
}

/// A drand public key (G2, 96 bytes compressed).
pub fn public_key(bytes: &[u8]) -> Result<G2Affine, TlockError> {
    G2Affine::deserialize_compressed(bytes).map_err(|_| TlockError::BadPoint("G2 public key"))
}

/// A drand round signature (G1, 48 bytes compressed).
pub fn signature(bytes: &[u8]) -> Result<G1Affine, TlockError> {
    G1Affine::deserialize_compressed(bytes).map_err(|_| TlockError::BadPoint("G1 signature"))
}

/// The point drand signs for `round`: hash-to-G1 of SHA-256 of the big-endian round.
pub fn round_point(round: u64) -> Result<G1Affine, TlockError> {
    let message = Sha256::digest(round.to_be_bytes());
    let hasher = MapToCurveBasedHasher::<
        G1Projective,
        DefaultFieldHasher<Sha256, 128>,
        WBMap<ark_bls12_381::g1::Config>,
    >::new(DST)
    .map_err(|_| TlockError::HashToCurve)?;
    hasher.hash(&message).map_err(|_| TlockError::HashToCurve)
}

/// Whether `signature` is drand's signature of `round` under `public_key`.
pub fn verify_round(
    public_key: &G2Affine,
    round: u64,
    signature: &G1Affine,
) -> Result<bool, TlockError> {
    let q = round_point(round)?;
    Ok(Bls12_381::pairing(signature, G2Affine::generator()) == Bls12_381::pairing(q, public_key))
}

/// Encrypts `message` so that drand's signature of `round` decrypts it.
pub fn encrypt(
    public_key: &G2Affine,
    round: u64,
    message: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>, TlockError> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());
    let mut sigma = [0u8; 32];
    rng.fill_bytes(&mut sigma);
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill_bytes(&mut nonce);

    let r = h3(&sigma, key.as_ref());
    let u = (G2Projective::generator() * r).into_affine();
    let q = round_point(round)?;
    let mask = h2(&Bls12_381::pairing(q, (*public_key * r).into_affine()));
    let v = xor(&sigma, &mask);
    let w = xor(key.as_ref(), &Sha256::digest(sigma));

    let cipher = aes_gcm::Aes256Gcm::new(key.as_ref().into());
    let sealed = cipher
        .encrypt(&nonce.into(), message)
        .map_err(|_| TlockError::Malformed("plaintext too large"))?;

    let mut out = Vec::with_capacity(244 + message.len());
    u.serialize_compressed(&mut out)
        .map_err(|_| TlockError::BadPoint("G2"))?;
    put_vec(&mut out, &v);
    put_vec(&mut out, &w);
    let mut body = Vec::with_capacity(sealed.len() + 28);
    put_vec(&mut body, &sealed);
    put_vec(&mut body, &nonce);
    put_vec(&mut out, &body);
    put_vec(&mut out, SUITE);
    Ok(out)
}

/// Decrypts a ciphertext with drand's signature of its round.
pub fn decrypt(ciphertext: &[u8], signature: &G1Affine) -> Result<Vec<u8>, TlockError> {
    if ciphertext.len() > MAX_CIPHERTEXT {
        return Err(TlockError::Malformed("larger than any commitment"));
    }
    let mut rest = ciphertext;
    let u_bytes = take(&mut rest, G2_BYTES).ok_or(TlockError::Malformed("truncated header"))?;
    // Validates on-curve and subgroup membership.
    let u =
        G2Affine::deserialize_compressed(u_bytes).map_err(|_| TlockError::BadPoint("G2 header"))?;
    let v = get_vec(&mut rest).ok_or(TlockError::Malformed("truncated V"))?;
    let w = get_vec(&mut rest).ok_or(TlockError::Malformed("truncated W"))?;
    let mut body = get_vec(&mut rest).ok_or(TlockError::Malformed("truncated body"))?;
    // The suite is written but, as in the chain's decryptor, not interpreted.
    if v.len() != 32 || w.len() != 32 {
        return Err(TlockError::Malformed("V and W must be 32 bytes"));
    }
    let sealed = get_vec(&mut body).ok_or(TlockError::Malformed("truncated sealed body"))?;
    let nonce = get_vec(&mut body).ok_or(TlockError::Malformed("truncated nonce"))?;
    if nonce.len() != NONCE_BYTES {
        return Err(TlockError::Malformed("nonce must be 12 bytes"));
    }

    let sigma = xor(v, &h2(&Bls12_381::pairing(signature, u)));
    let key = zeroize::Zeroizing::new(xor(w, &Sha256::digest(&sigma)));
    if (G2Projective::generator() * h3(&sigma, key.as_ref())).into_affine() != u {
        return Err(TlockError::WrongKey);
    }
    let cipher = aes_gcm::Aes256Gcm::new(key.as_slice().into());
    let nonce: [u8; NONCE_BYTES] = nonce
        .try_into()
        .map_err(|_| TlockError::Malformed("nonce"))?;
    cipher
        .decrypt(&nonce.into(), sealed)
        .map_err(|_| TlockError::BadBody)
}

/// H2: SHA-256 of the pairing value's canonical compressed serialization (576 bytes).
fn h2(gt: &ark_ec::pairing::PairingOutput<Bls12_381>) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(576);
    // Serializing a field element into a Vec cannot fail.
    let _ = gt.0.serialize_compressed(&mut bytes);
    Sha256::digest(&bytes).into()
}

/// H3: SHA-256 of `sigma || message`, reduced big-endian into the scalar field.
fn h3(sigma: &[u8], message: &[u8]) -> Fr {
    let mut hasher = Sha256::new();
    hasher.update(sigma);
    hasher.update(message);
    Fr::from_be_bytes_mod_order(&hasher.finalize())
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter()
        .zip(b.iter().chain(std::iter::repeat(&0)))
        .map(|(x, y)| x ^ y)
        .collect()
}

fn put_vec(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn get_vec<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u64::from_le_bytes(take(rest, 8)?.try_into().ok()?);
    take(rest, usize::try_from(len).ok()?)
}
