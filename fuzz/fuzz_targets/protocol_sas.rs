//! SAS tokens: `SasToken::parse` and `SasVerifier::verify`.
//!
//! Input: token text, a NUL byte, then bytes that drive the structured part.
//!
//! Checks:
//! - any text: parsing never panics; a parsed token prints and parses back to an equal token; its
//!   `Debug` hides the signature; verifying it with any keys, resource and clock never panics;
//! - tokens built as the SDKs build them (reference iotedge-runtime §5.5: `sr` is the encoded
//!   `{host}/devices/{encoded id}[/modules/{encoded id}]`, optionally lower-cased first as the
//!   identity service does) for IoT Hub ids verify for that identity with the right key before
//!   expiry, and are refused when expired, with the wrong key, or for another device.
#![no_main]

#[path = "../common/ids.rs"]
mod ids;

use arbitrary::{Result, Unstructured};
use ironedge_protocol::{Identity, SasError, SasToken, SasVerifier, SymmetricKey, encode_resource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let mut u = Unstructured::new(rest);
    let _ = free_text(&text, &mut u);
    let _ = built(&mut u);
});

fn arbitrary_key(u: &mut Unstructured<'_>) -> Result<SymmetricKey> {
    let mut bytes: Vec<u8> = u.arbitrary()?;
    if bytes.is_empty() {
        bytes.push(u.arbitrary()?);
    }
    SymmetricKey::from_bytes(bytes).map_err(|_| arbitrary::Error::IncorrectFormat)
}

fn free_text(text: &str, u: &mut Unstructured<'_>) -> Result<()> {
    let token = match SasToken::parse(text) {
        Ok(token) => token,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return Ok(());
        }
    };
    let printed = token.to_string();
    let again = SasToken::parse(&printed)
        .unwrap_or_else(|e| panic!("printed token {printed:?} does not parse: {e}"));
    assert_eq!(again, token, "{text:?} printed as {printed:?}");
    assert!(format!("{token:?}").contains("<redacted>"));
    let resource = token.resource();
    let host = resource.split('/').next().unwrap_or_default().to_owned();
    let verifier = SasVerifier::new([host, u.arbitrary::<String>()?]).with_skew(u.arbitrary()?);
    let keys = [arbitrary_key(u)?, arbitrary_key(u)?];
    let expected: String = u.arbitrary()?;
    let _ = verifier.verify(&token, &expected, &keys, u.arbitrary()?);
    let _ = token.verify_signature(&keys);
    let _ = token.verify_signature(std::iter::empty());
    Ok(())
}

fn built(u: &mut Unstructured<'_>) -> Result<()> {
    let host = ids::host(u)?;
    let device = ids::id(u)?;
    let identity = if u.arbitrary()? {
        Identity::module(device.as_str(), ids::id(u)?)
    } else {
        Identity::device(device.as_str())
    };
    let device_scope = u.ratio(1, 4)?;
    let mut resource = format!("{host}/devices/{}", encode_resource(&device));
    if let (Some(module), false) = (&identity.module_id, device_scope) {
        resource.push_str(&format!("/modules/{}", encode_resource(module)));
    }
    if u.ratio(1, 4)? {
        resource = resource.to_lowercase();
    }
    let key = arbitrary_key(u)?;
    let other = arbitrary_key(u)?;
    let expiry = u.int_in_range(1..=u64::MAX)?;
    let now = u.int_in_range(0..=expiry - 1)?;
    let token = SasToken::build(&resource, &key, expiry, None);
    let printed = token.to_string();
    let token = SasToken::parse(&printed)
        .unwrap_or_else(|e| panic!("built token {printed:?} does not parse: {e}"));
    let verifier = SasVerifier::new([host.to_uppercase()]);
    let wanted = identity.resource_path();

    let ok = verifier
        .verify(&token, &wanted, [&key], now)
        .unwrap_or_else(|e| panic!("token for {resource:?} refused for {wanted:?}: {e}"));
    assert_eq!((ok.key_index, ok.expiry), (0, expiry));
    // Keys that differ only by trailing zero bytes (or hash alike past 64 bytes) are one HMAC key.
    if other.sign(b"probe") != key.sign(b"probe") {
        let second = verifier
            .verify(&token, &wanted, [&other, &key], now)
            .unwrap_or_else(|e| panic!("secondary key refused: {e}"));
        assert_eq!(second.key_index, 1);
        assert_eq!(
            verifier.verify(&token, &wanted, [&other], now),
            Err(SasError::SignatureMismatch)
        );
    }
    assert!(matches!(
        verifier.verify(&token, &wanted, [&key], expiry),
        Err(SasError::Expired { .. })
    ));
    let stranger = Identity::device(format!("{device}x"));
    assert!(
        verifier
            .verify(&token, &stranger.resource_path(), [&key], now)
            .is_err(),
        "a token for {resource:?} was accepted for {stranger}"
    );
    Ok(())
}
