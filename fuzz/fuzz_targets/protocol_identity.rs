//! MQTT CONNECT identities: `Identity::from_client_id`, `Username::parse` and
//! `identity_from_connect`.
//!
//! Input: the client id, a NUL byte, the username, a NUL byte, then bytes for the structured part.
//!
//! Checks:
//! - any text: nothing panics; a client id that parses prints back (`client_id()`) to itself; a
//!   username that parses names an identity whose `username()` parses to the same host,
//!   identity and api-version; `identity_from_connect` succeeds exactly when both parse and
//!   name the same identity;
//! - identities built from IoT Hub ids survive client id and username round trips, with every
//!   optional username parameter the SDKs send.
#![no_main]

#[path = "../common/ids.rs"]
mod ids;

use arbitrary::{Result, Unstructured};
use ironedge_protocol::{
    ConnectError, Identity, Username, encode_component, identity_from_connect,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let client_id = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let username = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let rest = parts.next().unwrap_or_default();
    free_text(&client_id, &username);
    let _ = built(&mut Unstructured::new(rest));
});

fn free_text(client_id: &str, username: &str) {
    let from_client = Identity::from_client_id(client_id);
    if let Ok(identity) = &from_client {
        assert_eq!(identity.client_id(), client_id);
        assert!(!identity.device_id.is_empty());
        assert!(identity.module_id.as_deref() != Some(""));
    }
    let parsed = Username::parse(username);
    if let Ok(u) = &parsed {
        assert!(!u.host.is_empty() && !u.api_version.is_empty());
        // Only plain api-versions can be written back unencoded (real ones are dates).
        if !u.api_version.contains(['&', '%', '/', '=']) {
            let printed = u.identity.username(&u.host, &u.api_version);
            let again = Username::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} written from {username:?}: {e}"));
            assert_eq!(
                (&again.host, &again.identity, &again.api_version),
                (&u.host, &u.identity, &u.api_version)
            );
        }
    }
    let username = Some(username).filter(|u| !u.is_empty());
    match identity_from_connect(client_id, username) {
        Ok((identity, u)) => {
            assert_eq!(Ok(&identity), from_client.as_ref());
            assert_eq!(u.identity, identity);
        }
        Err(ConnectError::IdentityMismatch { .. }) => {
            let (Ok(a), Ok(b)) = (&from_client, &parsed) else {
                panic!("a mismatch needs two identities");
            };
            assert_ne!(a, &b.identity);
        }
        Err(e) => {
            assert!(
                from_client.is_err() || parsed.is_err() || username.is_none(),
                "{e}"
            );
        }
    }
}

fn built(u: &mut Unstructured<'_>) -> Result<()> {
    let identity = if u.arbitrary()? {
        Identity::module(ids::id(u)?, ids::id(u)?)
    } else {
        Identity::device(ids::id(u)?)
    };
    assert_eq!(
        Identity::from_client_id(&identity.client_id()),
        Ok(identity.clone())
    );
    let host = ids::host(u)?;
    let mut username = identity.username(&host, "2021-04-12");
    let client_type: String = u.arbitrary()?;
    let model_id: String = u.arbitrary()?;
    if u.arbitrary()? {
        username.push_str(&format!(
            "&DeviceClientType={}",
            encode_component(&client_type)
        ));
    }
    if u.arbitrary()? {
        username.push_str(&format!("&model-id={}", encode_component(&model_id)));
    }
    let (from_connect, parsed) = identity_from_connect(&identity.client_id(), Some(&username))
        .unwrap_or_else(|e| panic!("{username:?} refused: {e}"));
    assert_eq!(from_connect, identity);
    assert_eq!(
        (parsed.host.as_str(), parsed.api_version.as_str()),
        (host.as_str(), "2021-04-12")
    );
    if let Some(t) = &parsed.client_type {
        assert_eq!(t, &client_type);
    }
    if let Some(m) = &parsed.model_id {
        assert_eq!(m, &model_id);
    }
    Ok(())
}
