//! Connection strings: `ConnectionString::parse`.
//!
//! Input: connection string text, a NUL byte, then bytes that drive the structured part.
//!
//! Checks:
//! - any text: parsing never panics; a parsed string prints and parses back to an equal one;
//!   its kind, resource URI and connect host are consistent with its fields; `Debug` redacts the
//!   secret;
//! - strings built from parts (IoT Hub ids and host names, any key, token or X.509) print and
//!   parse back to the same parts.
#![no_main]

#[path = "../common/ids.rs"]
mod ids;

use arbitrary::{Result, Unstructured};
use ironedge_protocol::{ConnectionString, ConnectionStringKind, Credential, SymmetricKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    match ConnectionString::parse(&String::from_utf8_lossy(text)) {
        Ok(cs) => check(&cs),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(cs) = built(&mut Unstructured::new(rest)) {
        check(&cs);
    }
});

fn check(cs: &ConnectionString) {
    let printed = cs.to_string();
    let again = ConnectionString::parse(&printed)
        .unwrap_or_else(|e| panic!("printed {cs:?} does not parse: {e}"));
    assert_eq!(&again, cs, "round trip through {cs:?}");
    let debug = format!("{cs:?}");
    match &cs.credential {
        Credential::Key(_) | Credential::Token(_) => assert!(debug.contains("<redacted>")),
        Credential::X509 => {}
    }
    let uri = cs.resource_uri();
    assert!(uri.starts_with(&cs.host_name));
    match cs.kind() {
        ConnectionStringKind::Module => assert!(cs.module_id.is_some() && cs.device_id.is_some()),
        ConnectionStringKind::Device => assert!(cs.module_id.is_none() && cs.device_id.is_some()),
        ConnectionStringKind::Policy => assert!(cs.device_id.is_none() && uri == cs.host_name),
    }
    let connect = cs.connect_host();
    assert!(connect == cs.host_name || Some(connect) == cs.gateway_host_name.as_deref());
}

fn built(u: &mut Unstructured<'_>) -> Result<ConnectionString> {
    let host = ids::host(u)?;
    let mut bytes: Vec<u8> = u.arbitrary()?;
    if bytes.is_empty() {
        bytes.push(0);
    }
    let key = SymmetricKey::from_bytes(bytes).map_err(|_| arbitrary::Error::IncorrectFormat)?;
    let mut cs = match u.int_in_range(0..=2)? {
        0 => ConnectionString::device(&host, &ids::id(u)?, key),
        1 => ConnectionString::module(&host, &ids::id(u)?, &ids::id(u)?, key),
        _ => ConnectionString::policy(&host, &ids::id(u)?, key),
    };
    if u.arbitrary()? {
        cs = cs.with_gateway(&ids::host(u)?);
    }
    match u.int_in_range(0..=2)? {
        0 => {}
        1 if cs.kind() != ConnectionStringKind::Policy => cs.credential = Credential::X509,
        _ => {
            let token = format!(
                "SharedAccessSignature sr={}&sig={}&se={}",
                ids::host(u)?,
                ids::id(u)?,
                u.arbitrary::<u64>()?
            );
            cs.credential = Credential::Token(token);
        }
    }
    let printed = cs.to_string();
    let again = ConnectionString::parse(&printed)
        .unwrap_or_else(|e| panic!("built {printed:?} does not parse: {e}"));
    assert_eq!(again, cs);
    Ok(cs)
}
