//! JWT claims: exp and nbf with leeway, aud, iss, the identity claim.

use serde_json::{json, Value};

use super::super::{JwtVerifier, Rejection};
use super::*;

fn at(verifier: &JwtVerifier, claims: &Value, now: u64) -> Result<String, Rejection> {
    let token = sign(&hs(), None, claims);
    verifier
        .verify(token.as_bytes(), now)
        .map(|id| id.as_str().to_owned())
}

#[test]
fn exp_edges_with_the_default_leeway() {
    let v = hs_verifier();
    let c = json!({ "sub": "a", "exp": NOW });
    // Accepted while now < exp + 30.
    assert!(at(&v, &c, NOW - 1000).is_ok());
    assert!(at(&v, &c, NOW).is_ok());
    assert!(at(&v, &c, NOW + 29).is_ok());
    assert_eq!(at(&v, &c, NOW + 30), Err(Rejection::Expired));
    assert_eq!(at(&v, &c, NOW + 31), Err(Rejection::Expired));
}

#[test]
fn exp_edges_with_other_leeways() {
    let c = json!({ "sub": "a", "exp": NOW });
    let strict = hs_verifier().with_leeway_secs(0);
    assert!(at(&strict, &c, NOW - 1).is_ok());
    assert_eq!(at(&strict, &c, NOW), Err(Rejection::Expired));
    let loose = hs_verifier().with_leeway_secs(300);
    assert!(at(&loose, &c, NOW + 299).is_ok());
    assert_eq!(at(&loose, &c, NOW + 300), Err(Rejection::Expired));
    // No overflow at the ends of the range.
    let huge = hs_verifier().with_leeway_secs(u64::MAX);
    assert!(at(&huge, &c, u64::MAX - 1).is_ok());
    let far = json!({ "sub": "a", "exp": u64::MAX });
    assert!(at(&strict, &far, u64::MAX - 1).is_ok());
    assert_eq!(
        at(&strict, &json!({ "sub": "a", "exp": 0 }), 0),
        Err(Rejection::Expired)
    );
}

#[test]
fn nbf_edges() {
    let c = json!({ "sub": "a", "exp": NOW + 3600, "nbf": NOW });
    let v = hs_verifier();
    // Accepted once now + 30 >= nbf.
    assert_eq!(at(&v, &c, NOW - 31), Err(Rejection::NotYetValid));
    assert!(at(&v, &c, NOW - 30).is_ok());
    assert!(at(&v, &c, NOW).is_ok());
    let strict = hs_verifier().with_leeway_secs(0);
    assert_eq!(at(&strict, &c, NOW - 1), Err(Rejection::NotYetValid));
    assert!(at(&strict, &c, NOW).is_ok());
    let far = json!({ "sub": "a", "exp": NOW + 3600, "nbf": u64::MAX });
    assert_eq!(at(&v, &far, NOW), Err(Rejection::NotYetValid));
}

#[test]
fn fractional_dates_round_up() {
    let strict = hs_verifier().with_leeway_secs(0);
    let c = json!({ "sub": "a", "exp": NOW as f64 + 0.5 });
    assert!(at(&strict, &c, NOW).is_ok());
    assert_eq!(at(&strict, &c, NOW + 1), Err(Rejection::Expired));
    let c = json!({ "sub": "a", "exp": NOW + 60, "nbf": NOW as f64 + 0.5 });
    assert_eq!(at(&strict, &c, NOW), Err(Rejection::NotYetValid));
    assert!(at(&strict, &c, NOW + 1).is_ok());
    // Beyond u64: saturates, so never expires.
    assert!(at(&strict, &json!({ "sub": "a", "exp": 1e30 }), NOW).is_ok());
}

#[test]
fn bad_dates_are_malformed() {
    let v = hs_verifier();
    for exp in [
        json!("1700000000"),
        json!(-1),
        json!(-0.5),
        json!(null),
        json!([NOW]),
    ] {
        let c = json!({ "sub": "a", "exp": exp });
        assert_eq!(
            at(&v, &c, NOW),
            Err(Rejection::Malformed("exp is not a date")),
            "{exp}"
        );
    }
    let c = json!({ "sub": "a", "exp": NOW + 60, "nbf": "soon" });
    assert_eq!(
        at(&v, &c, NOW),
        Err(Rejection::Malformed("nbf is not a date"))
    );
}

#[test]
fn exp_is_required_unless_turned_off() {
    let c = json!({ "sub": "a" });
    assert_eq!(
        at(&hs_verifier(), &c, NOW),
        Err(Rejection::MissingClaim("exp"))
    );
    let lax = hs_verifier().with_require_exp(false);
    assert_eq!(at(&lax, &c, NOW).unwrap(), "a");
    // nbf still applies without exp.
    let c = json!({ "sub": "a", "nbf": NOW + 100 });
    assert_eq!(at(&lax, &c, NOW), Err(Rejection::NotYetValid));
}

#[test]
fn audience_as_string_or_array() {
    let v = hs_verifier().with_audiences(["api", "admin"]);
    let with = |aud: Value| json!({ "sub": "a", "exp": NOW + 60, "aud": aud });
    assert!(at(&v, &with(json!("api")), NOW).is_ok());
    assert!(at(&v, &with(json!("admin")), NOW).is_ok());
    assert!(at(&v, &with(json!(["other", "api"])), NOW).is_ok());
    assert!(at(&v, &with(json!(["admin"])), NOW).is_ok());
    assert_eq!(
        at(&v, &with(json!("other")), NOW),
        Err(Rejection::WrongAudience)
    );
    assert_eq!(
        at(&v, &with(json!(["x", "y"])), NOW),
        Err(Rejection::WrongAudience)
    );
    assert_eq!(at(&v, &with(json!([])), NOW), Err(Rejection::WrongAudience));
    assert_eq!(
        at(&v, &with(json!("API")), NOW),
        Err(Rejection::WrongAudience)
    );
    // Required when configured.
    assert_eq!(at(&v, &claims("a"), NOW), Err(Rejection::WrongAudience));
    // Not strings: malformed, even when one entry would match.
    for bad in [
        json!(7),
        json!(["api", 7]),
        json!({ "api": true }),
        json!(null),
    ] {
        assert_eq!(
            at(&v, &with(bad.clone()), NOW),
            Err(Rejection::Malformed("aud is not a string or strings")),
            "{bad}"
        );
    }
}

#[test]
fn a_token_with_aud_needs_a_configured_audience() {
    // RFC 7519 §4.1.3: a recipient that does not identify with aud rejects.
    let v = hs_verifier();
    let c = json!({ "sub": "a", "exp": NOW + 60, "aud": "someone-else" });
    assert_eq!(at(&v, &c, NOW), Err(Rejection::WrongAudience));
    assert!(at(&v, &claims("a"), NOW).is_ok());
}

#[test]
fn issuer_must_match_when_configured() {
    let v = hs_verifier().with_issuers(["https://idp.example", "https://old-idp.example"]);
    let with = |iss: Value| json!({ "sub": "a", "exp": NOW + 60, "iss": iss });
    assert!(at(&v, &with(json!("https://idp.example")), NOW).is_ok());
    assert!(at(&v, &with(json!("https://old-idp.example")), NOW).is_ok());
    assert_eq!(
        at(&v, &with(json!("https://evil.example")), NOW),
        Err(Rejection::WrongIssuer)
    );
    assert_eq!(
        at(&v, &with(json!("https://idp.example/")), NOW),
        Err(Rejection::WrongIssuer)
    );
    assert_eq!(
        at(&v, &with(json!(["https://idp.example"])), NOW),
        Err(Rejection::WrongIssuer)
    );
    assert_eq!(at(&v, &claims("a"), NOW), Err(Rejection::WrongIssuer));
    // Not configured: any issuer, or none.
    assert!(at(&hs_verifier(), &with(json!("anyone")), NOW).is_ok());
}

#[test]
fn checks_run_in_a_fixed_order() {
    // Expired and wrong issuer and wrong audience: expiry is reported.
    let v = hs_verifier().with_issuers(["i"]).with_audiences(["a"]);
    let c = json!({ "exp": NOW - 100, "iss": "x", "aud": "y" });
    assert_eq!(at(&v, &c, NOW), Err(Rejection::Expired));
    let c = json!({ "exp": NOW + 100, "iss": "x", "aud": "y" });
    assert_eq!(at(&v, &c, NOW), Err(Rejection::WrongIssuer));
    let c = json!({ "exp": NOW + 100, "iss": "i", "aud": "y" });
    assert_eq!(at(&v, &c, NOW), Err(Rejection::WrongAudience));
    let c = json!({ "exp": NOW + 100, "iss": "i", "aud": "a" });
    assert_eq!(at(&v, &c, NOW), Err(Rejection::MissingClaim("identity")));
}

#[test]
fn identity_claim_is_sub_or_configured() {
    let v = hs_verifier();
    assert_eq!(at(&v, &claims("user-42"), NOW).unwrap(), "user-42");
    let c = json!({ "sub": 12345, "exp": NOW + 60 });
    assert_eq!(at(&v, &c, NOW).unwrap(), "12345");
    let c = json!({ "sub": -7, "exp": NOW + 60 });
    assert_eq!(at(&v, &c, NOW).unwrap(), "-7");
    let c = json!({ "exp": NOW + 60 });
    assert_eq!(at(&v, &c, NOW), Err(Rejection::MissingClaim("identity")));

    let by_email = hs_verifier().with_identity_claim("email");
    let c = json!({ "sub": "u1", "email": "ann@example.com", "exp": NOW + 60 });
    assert_eq!(at(&by_email, &c, NOW).unwrap(), "ann@example.com");
    assert_eq!(
        at(&by_email, &claims("u1"), NOW),
        Err(Rejection::MissingClaim("identity"))
    );
    // Unicode is fine.
    assert_eq!(
        at(&v, &claims("Zoë Ångström"), NOW).unwrap(),
        "Zoë Ångström"
    );
}

#[test]
fn identities_unfit_for_a_header_are_refused() {
    let v = hs_verifier();
    let unusable = Err(Rejection::Malformed(
        "identity claim is not a usable string or integer",
    ));
    for sub in [
        json!(""),
        json!("a\r\nx-admin: yes"),
        json!("tab\tinside"),
        json!(" padded"),
        json!("padded "),
        json!("nul\u{0}"),
        json!("x".repeat(257)),
        json!(1.5),
        json!(true),
        json!({ "id": 1 }),
        json!(["a"]),
        json!(null),
    ] {
        let c = json!({ "sub": sub, "exp": NOW + 60 });
        assert_eq!(at(&v, &c, NOW), unusable, "{sub}");
    }
    assert!(at(&v, &claims(&"x".repeat(256)), NOW).is_ok());
}
