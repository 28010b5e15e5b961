//! Decoding signed extrinsics the way a node would, with subxt's offline client and the
//! same metadata, and checking their signatures by hand.

use std::sync::Arc;

use cacheon_chain::mock::GENESIS;
use parity_scale_codec::{Decode, Encode};
use subxt::config::substrate::SpecVersionForRange;
use subxt::utils::{Era, H256};

use super::SPEC;

/// Decodes extrinsic bytes with subxt's offline client and the same metadata.
pub async fn decode(bytes: &[u8]) -> Decoded {
    let metadata =
        Arc::new(subxt::Metadata::decode_from(&super::finney_metadata()[..]).expect("metadata"));
    let config = subxt::SubstrateConfig::builder()
        .set_genesis_hash(H256(GENESIS))
        .set_spec_version_for_block_ranges([SpecVersionForRange {
            block_range: 0..u64::MAX,
            spec_version: SPEC,
            transaction_version: 1,
        }])
        .set_metadata_for_spec_versions([(SPEC, metadata)])
        .build();
    let at = subxt::OfflineClient::new_with_config(config)
        .at_block(0u64)
        .expect("offline");
    let extrinsics = at.extrinsics().from_bytes(vec![bytes.to_vec()]).await;
    let xt = extrinsics.iter().next().expect("one").expect("decodes");
    let extensions = xt.transaction_extensions().expect("signed");
    let era = extensions
        .iter()
        .find(|e| e.name() == "CheckMortality")
        .map(|e| Era::decode(&mut e.bytes()).expect("era"))
        .expect("mortality");
    Decoded {
        pallet: xt.pallet_name().to_owned(),
        call: xt.call_name().to_owned(),
        signed: xt.is_signed(),
        address: xt.address_bytes().expect("address").to_vec(),
        signature: xt.signature_bytes().expect("signature").to_vec(),
        nonce: extensions.nonce(),
        tip: extensions.tip(),
        era,
        call_data: xt.call_data_bytes().to_vec(),
        extensions: xt
            .transaction_extensions_bytes()
            .expect("extensions")
            .to_vec(),
        fields: xt
            .iter_call_data_fields()
            .map(|f| (f.name().to_owned(), f.bytes().to_vec()))
            .collect(),
    }
}

pub struct Decoded {
    pub pallet: String,
    pub call: String,
    pub signed: bool,
    pub address: Vec<u8>,
    pub signature: Vec<u8>,
    pub nonce: Option<u64>,
    pub tip: Option<u128>,
    pub era: Era,
    pub call_data: Vec<u8>,
    pub extensions: Vec<u8>,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Decoded {
    pub fn field(&self, name: &str) -> &[u8] {
        &self
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .1
    }

    /// Checks the sr25519 signature over the v4 signer payload, rebuilt by hand: call data,
    /// the extensions' explicit values, then their implicit data (spec and transaction
    /// versions, genesis, the mortality checkpoint's hash, no metadata hash), hashed with
    /// blake2-256 when longer than 256 bytes.
    pub fn assert_signature_valid(&self, checkpoint: [u8; 32]) {
        let mut payload = self.call_data.clone();
        payload.extend(&self.extensions);
        payload.extend(SPEC.encode());
        payload.extend(1u32.encode());
        payload.extend(GENESIS);
        payload.extend(checkpoint);
        payload.push(0); // CheckMetadataHash: None
        if payload.len() > 256 {
            payload = sp_crypto_hashing::blake2_256(&payload).to_vec();
        }
        assert_eq!(self.signature[0], 1, "MultiSignature::Sr25519");
        let public = schnorrkel::PublicKey::from_bytes(&self.address[1..]).expect("public key");
        let signature = schnorrkel::Signature::from_bytes(&self.signature[1..]).expect("signature");
        public
            .verify(
                schnorrkel::signing_context(b"substrate").bytes(&payload),
                &signature,
            )
            .expect("the signature verifies over the hand-built payload");
    }
}
