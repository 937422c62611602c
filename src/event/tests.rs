use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::capi::{PiiKind, is_currency};
use crate::mapping::tests_support::ISSUE_EXAMPLE;
use crate::mapping::{Plan, TimeFormat};

/// 2026-11-20T12:00:00Z
const NOW: i64 = 1_795_176_000;

fn rules() -> Rules {
    Rules {
        now: NOW,
        expiry_margin_secs: 3600,
        payloads: true,
    }
}

fn plan(text: &str) -> Plan {
    Plan::compile(Path::new("m.yaml"), text, &|_| None).expect("mapping compiles")
}

/// Maps one row given as `column => value` pairs (missing columns are empty).
fn map_with(p: &Plan, r: &Rules, cells: &[(&str, &str)]) -> Mapped {
    let by_name: HashMap<&str, &str> = cells.iter().copied().collect();
    let row: Vec<String> = p
        .columns
        .iter()
        .map(|c| by_name.get(c.as_str()).copied().unwrap_or("").to_string())
        .collect();
    let m = map_row(p, r, |i| row[i].as_str());
    // Own the result so `row` can go.
    Mapped { ..m }
}

fn wa_purchase() -> Vec<(&'static str, &'static str)> {
    vec![
        ("chan", "WA"),
        ("stage", "paid"),
        ("occurred_at", "2026-11-19T10:00:00Z"),
        ("conv_id", "c-1"),
        ("waba_id", "102290129340398"),
        ("click_id", "ARAkLkA8rmlFeiCktEJQ"),
        ("email", " John_Smith@Gmail.com "),
        ("phone", "+1 (650)555-1212"),
        ("amount", "12.50"),
        ("currency", "usd"),
        ("order_ref", "o-9"),
    ]
}

fn set(
    mut row: Vec<(&'static str, &'static str)>,
    k: &'static str,
    v: &'static str,
) -> Vec<(&'static str, &'static str)> {
    row.retain(|(c, _)| *c != k);
    row.push((k, v));
    row
}

fn go(row: &[(&str, &str)]) -> Mapped {
    map_with(&plan(ISSUE_EXAMPLE), &rules(), row)
}

#[test]
fn a_good_whatsapp_purchase_becomes_the_exact_event() {
    let m = go(&wa_purchase());
    assert_eq!(m.verdict, Verdict::Valid, "{}", m.reason);
    assert_eq!(m.reason, "");
    let v: serde_json::Value = serde_json::from_str(m.json.as_deref().unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "event_name": "Purchase",
            "event_time": 1_795_082_400,
            "action_source": "business_messaging",
            "messaging_channel": "whatsapp",
            "event_id": "c-1",
            "user_data": {
                "whatsapp_business_account_id": "102290129340398",
                "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
                // Meta's own worked examples (capi-spec.md §2).
                "em": "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
                "ph": "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
            },
            "custom_data": {"value": 12.5, "currency": "USD", "order_id": "o-9"}
        })
    );
    assert!(m.key.is_some());
}

#[test]
fn whatsapp_needs_waba_and_click_id() {
    let m = go(&set(wa_purchase(), "click_id", ""));
    assert_eq!(m.verdict, Verdict::Invalid);
    assert!(
        m.reason
            .contains("ctwa_clid is empty; whatsapp events need it"),
        "{}",
        m.reason
    );
    let m = go(&set(wa_purchase(), "waba_id", ""));
    assert!(
        m.reason.contains("whatsapp_business_account_id is empty"),
        "{}",
        m.reason
    );
}

#[test]
fn messenger_needs_page_and_psid_and_ignores_other_channels_ids() {
    let row = set(
        set(set(wa_purchase(), "chan", "FB"), "page_id", "111222333"),
        "psid",
        "",
    );
    let m = go(&row);
    assert!(
        m.reason
            .contains("page_scoped_user_id is empty; messenger events need it"),
        "{}",
        m.reason
    );
    let m = go(&set(row, "psid", "24680"));
    assert_eq!(m.verdict, Verdict::Valid, "{}", m.reason);
    let json = m.json.unwrap();
    assert!(json.contains("\"page_scoped_user_id\":\"24680\""));
    assert!(
        !json.contains("ctwa_clid"),
        "a whatsapp id must not ride along on a messenger event: {json}"
    );
}

#[test]
fn instagram_needs_account_and_igsid() {
    let row = set(
        set(wa_purchase(), "chan", "IG"),
        "ig_account",
        "17841400000000",
    );
    let m = go(&row);
    assert!(
        m.reason
            .contains("ig_sid is empty; instagram events need it"),
        "{}",
        m.reason
    );
    assert_eq!(go(&set(row, "igsid", "9988")).verdict, Verdict::Valid);
}

#[test]
fn channel_ids_are_not_hashed_and_must_not_look_hashed() {
    let hashed = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
    let m = go(&set(wa_purchase(), "click_id", hashed));
    assert_eq!(m.verdict, Verdict::Invalid);
    assert!(m.reason.contains("ctwa_clid looks hashed"), "{}", m.reason);
    let m = go(&set(wa_purchase(), "waba_id", "acme"));
    assert!(
        m.reason
            .contains("whatsapp_business_account_id `acme` is not an id"),
        "{}",
        m.reason
    );
}

#[test]
fn unknown_value_is_invalid_and_names_it_unless_passthrough() {
    let m = go(&set(wa_purchase(), "stage", "refund"));
    assert_eq!(m.verdict, Verdict::Invalid);
    assert!(
        m.reason.contains(
            "event_name value `refund` is not in the mapping's `values` (cart, lead, paid, shipped)"
        ),
        "{}",
        m.reason
    );
    let p = plan(&ISSUE_EXAMPLE.replace(
        "values: {paid: Purchase, lead: LeadSubmitted, cart: AddToCart, shipped: OrderShipped}",
        "values: {paid: Purchase}\n  passthrough: true",
    ));
    assert_eq!(
        map_with(&p, &rules(), &set(wa_purchase(), "stage", "ViewContent")).verdict,
        Verdict::Valid
    );
}

#[test]
fn event_name_allowlist_and_custom_opt_in() {
    let text = ISSUE_EXAMPLE.replace(
        "values: {paid: Purchase, lead: LeadSubmitted, cart: AddToCart, shipped: OrderShipped}",
        "values: {paid: Purchase}\n  passthrough: true",
    );
    let m = map_with(
        &plan(&text),
        &rules(),
        &set(wa_purchase(), "stage", "Refund"),
    );
    assert!(
        m.reason
            .contains("event_name `Refund` is not a business-messaging event"),
        "{}",
        m.reason
    );
    let custom = text.replace(
        "partner_agent: acme-bsp",
        "partner_agent: acme-bsp\nallow_custom_event_names: true",
    );
    assert_eq!(
        map_with(
            &plan(&custom),
            &rules(),
            &set(wa_purchase(), "stage", "Refund")
        )
        .verdict,
        Verdict::Valid
    );
}

#[test]
fn event_time_window_expired_with_margin_and_future() {
    let at = |t: &'static str| go(&set(wa_purchase(), "occurred_at", t));
    // 7 days minus 1 hour minus 1 second old: still inside.
    assert_eq!(at("2026-11-13T13:00:01Z").verdict, Verdict::Valid);
    let m = at("2026-11-13T12:59:59Z");
    assert_eq!(m.verdict, Verdict::Expired);
    assert!(m.reason.contains("days old"), "{}", m.reason);
    // Margin 0: the same row is still valid.
    let r0 = Rules {
        now: NOW,
        expiry_margin_secs: 0,
        payloads: true,
    };
    assert_eq!(
        map_with(
            &plan(ISSUE_EXAMPLE),
            &r0,
            &set(wa_purchase(), "occurred_at", "2026-11-13T12:59:59Z")
        )
        .verdict,
        Verdict::Valid
    );
    assert_eq!(at("2026-11-20T12:01:00Z").verdict, Verdict::Valid);
    let m = at("2026-11-20T12:01:01Z");
    assert_eq!(m.verdict, Verdict::Invalid);
    assert!(m.reason.contains("61s in the future"), "{}", m.reason);
}

#[test]
fn purchase_needs_currency_and_non_negative_value() {
    let p = plan(&ISSUE_EXAMPLE.replace(
        "currency: {column: currency, default: USD}",
        "currency: {column: currency}",
    ));
    let m = map_with(
        &p,
        &rules(),
        &set(set(wa_purchase(), "currency", ""), "amount", ""),
    );
    assert!(
        m.reason.contains("Purchase needs currency") && m.reason.contains("Purchase needs value"),
        "{}",
        m.reason
    );
    let m = go(&set(wa_purchase(), "amount", "-1"));
    assert!(m.reason.contains("value -1 is negative"), "{}", m.reason);
    let m = go(&set(wa_purchase(), "amount", "12,50"));
    assert!(
        m.reason.contains("value `12,50` is not a number"),
        "{}",
        m.reason
    );
    let m = go(&set(wa_purchase(), "currency", "US$"));
    assert!(
        m.reason.contains("currency `US$` is not an ISO 4217 code"),
        "{}",
        m.reason
    );
    // Other events do not need them.
    assert_eq!(
        go(&set(set(wa_purchase(), "stage", "lead"), "amount", "")).verdict,
        Verdict::Valid
    );
    // The default fills an empty currency.
    assert!(
        go(&set(wa_purchase(), "currency", ""))
            .json
            .unwrap()
            .contains("\"currency\":\"USD\"")
    );
}

#[test]
fn a_row_collects_all_its_errors() {
    let row = set(
        set(set(wa_purchase(), "click_id", ""), "amount", "abc"),
        "stage",
        "nope",
    );
    let m = go(&row);
    let n = m.reason.split("; ").count();
    assert!(n >= 3, "{}", m.reason);
}

#[test]
fn bad_optional_pii_is_dropped_with_a_note_not_the_row() {
    let m = go(&set(wa_purchase(), "email", "not-an-email"));
    assert_eq!(m.verdict, Verdict::Valid);
    assert!(
        m.reason.contains("em omitted: is not an email address"),
        "{}",
        m.reason
    );
    assert!(!m.json.unwrap().contains("\"em\""));
}

#[test]
fn pii_normalization_rules() {
    assert_eq!(
        normalize(PiiKind::Email, " John_Smith@Gmail.com ").unwrap(),
        "john_smith@gmail.com"
    );
    assert_eq!(
        normalize(PiiKind::Phone, "+1 (650) 555-1212").unwrap(),
        "16505551212"
    );
    assert_eq!(
        normalize(PiiKind::Phone, "0044 20 7946 0958").unwrap(),
        "442079460958"
    );
    assert_eq!(
        normalize(PiiKind::Name, " Mary-Ann O'Neil ").unwrap(),
        "maryannoneil"
    );
    assert_eq!(normalize(PiiKind::Name, "José").unwrap(), "josé");
    assert_eq!(
        normalize(PiiKind::City, "San Francisco").unwrap(),
        "sanfrancisco"
    );
    assert_eq!(normalize(PiiKind::State, "CA").unwrap(), "ca");
    assert_eq!(normalize(PiiKind::Zip, "94025-1234").unwrap(), "94025");
    assert_eq!(normalize(PiiKind::Zip, "SW1A 1AA").unwrap(), "sw1a1aa");
    assert_eq!(normalize(PiiKind::Country, "US").unwrap(), "us");
    assert!(normalize(PiiKind::Country, "USA").is_err());
    assert_eq!(
        normalize(PiiKind::DateOfBirth, "1990-02-28").unwrap(),
        "19900228"
    );
    assert_eq!(normalize(PiiKind::Gender, "Female").unwrap(), "f");
    assert!(normalize(PiiKind::Phone, "12").is_err());
}

#[test]
fn already_hashed_values_pass_through_lowercased() {
    let h = "62A14E44F765419D10FEA99367361A727C12365E2520F32218D505ED9AA0F62F";
    assert_eq!(hash_pii(PiiKind::Email, h).unwrap(), h.to_ascii_lowercase());
    assert_eq!(
        hash_pii(PiiKind::Email, "john_smith@gmail.com").unwrap(),
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    );
}

#[test]
fn time_formats() {
    let utc = chrono_tz::UTC;
    assert_eq!(parse_time("1795176000", &TimeFormat::Unix, &utc), Ok(NOW));
    assert_eq!(
        parse_time("1795176000999", &TimeFormat::UnixMs, &utc),
        Ok(NOW)
    );
    // Milli- and microseconds under `unix` are recognized by their size.
    assert_eq!(
        parse_time("1795176000999", &TimeFormat::Unix, &utc),
        Ok(NOW)
    );
    assert_eq!(
        parse_time("1795176000999999", &TimeFormat::Unix, &utc),
        Ok(NOW)
    );
    assert_eq!(
        parse_time("2026-11-20T14:00:00+02:00", &TimeFormat::Rfc3339, &utc),
        Ok(NOW)
    );
    assert_eq!(
        parse_time("2026-11-20 12:00:00", &TimeFormat::Rfc3339, &utc),
        Ok(NOW)
    );
    // Shapes databases and spreadsheets print.
    assert_eq!(
        parse_time("2026-11-20T12:00:00+0000", &TimeFormat::Rfc3339, &utc),
        Ok(NOW)
    );
    assert_eq!(
        parse_time("2026-11-20 09:00:00.000-0300", &TimeFormat::Rfc3339, &utc),
        Ok(NOW)
    );
    assert_eq!(
        parse_time("2026-11-20 12:00:00 UTC", &TimeFormat::Rfc3339, &utc),
        Ok(NOW)
    );
    let sp: chrono_tz::Tz = "America/Sao_Paulo".parse().unwrap();
    assert_eq!(
        parse_time("2026-11-20T09:00:00", &TimeFormat::Rfc3339, &sp),
        Ok(NOW)
    );
    let pat = TimeFormat::Pattern("%d/%m/%Y %H:%M".into());
    assert_eq!(parse_time("20/11/2026 09:00", &pat, &sp), Ok(NOW));
    // Parquet renderings are accepted whatever the format says.
    assert_eq!(
        parse_time("2026-11-20T12:00:00Z", &TimeFormat::Unix, &utc),
        Ok(NOW)
    );
    assert_eq!(parse_time("2026-11-20", &pat, &utc), Ok(NOW - 12 * 3600));
    let e = parse_time("yesterday", &TimeFormat::Rfc3339, &utc).unwrap_err();
    assert_eq!(
        e,
        "event_time `yesterday` does not match RFC 3339, e.g. `2026-11-20T10:00:00Z`"
    );
}

#[test]
fn dedup_key_is_stable_and_scoped_by_dataset() {
    let a = go(&wa_purchase()).key.unwrap();
    assert_eq!(a, go(&wa_purchase()).key.unwrap());
    let other = plan(&ISSUE_EXAMPLE.replace("\"1234567890\"", "\"999\""));
    assert_ne!(a, map_with(&other, &rules(), &wa_purchase()).key.unwrap());
    // Parts are length-prefixed: ("ab","c") differs from ("a","bc").
    let key = |parts: &[&str]| {
        let mut h = KeyHasher::new("1");
        for p in parts {
            h.part(p.as_bytes());
        }
        h.finish()
    };
    assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
}

#[test]
fn empty_dedup_key_part_makes_the_row_invalid() {
    let m = go(&set(wa_purchase(), "conv_id", ""));
    assert_eq!(m.verdict, Verdict::Invalid);
    assert!(
        m.reason.starts_with("dedup key part `event_id` is empty"),
        "{}",
        m.reason
    );
}

#[test]
fn typed_custom_fields() {
    let text = ISSUE_EXAMPLE.replace(
        "  order_id: {column: order_ref}",
        "  order_id: {column: order_ref}\n  content_ids: {column: skus}\n  contents: {column: items}\n  num_items: {column: n}",
    );
    let m = map_with(
        &plan(&text),
        &rules(),
        &[
            wa_purchase(),
            vec![
                ("skus", "a, b"),
                ("items", "[{\"id\":\"a\",\"quantity\":2}]"),
                ("n", "2"),
            ],
        ]
        .concat(),
    );
    let v: serde_json::Value = serde_json::from_str(m.json.as_deref().unwrap()).unwrap();
    assert_eq!(
        v["custom_data"]["content_ids"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(v["custom_data"]["contents"][0]["quantity"], 2);
    assert_eq!(v["custom_data"]["num_items"], 2);
}

#[test]
fn currencies() {
    assert!(is_currency("USD") && is_currency("BRL") && is_currency("INR"));
    assert!(!is_currency("usd") && !is_currency("XXX") && !is_currency("US"));
}

#[test]
fn without_payloads_the_verdict_reason_and_key_are_the_same() {
    let r_off = Rules {
        payloads: false,
        ..rules()
    };
    let rows = [
        wa_purchase(),
        set(wa_purchase(), "amount", "n/a"),
        set(wa_purchase(), "currency", "dollars"),
        set(wa_purchase(), "email", "not an email"),
        set(wa_purchase(), "waba_id", ""),
        set(wa_purchase(), "occurred_at", "2026-11-01T00:00:00Z"),
    ];
    for row in &rows {
        let on = go(row);
        let off = map_with(&plan(ISSUE_EXAMPLE), &r_off, row);
        assert_eq!(on.verdict, off.verdict, "{row:?}");
        assert_eq!(on.reason, off.reason, "{row:?}");
        assert_eq!(on.key, off.key, "{row:?}");
        assert_eq!(off.json, None, "{row:?}");
    }
    assert!(go(&rows[0]).json.is_some());
}

/// The state ledger stores these keys across runs and releases: a change in how they are
/// derived would make every already-sent event look new. These values must never change.
#[test]
fn dedup_keys_stay_what_earlier_ledgers_stored() {
    let every_part = ISSUE_EXAMPLE.replace(
        "key: [event_id]",
        "key: [dataset_id, channel, event_name, event_time, event_id, em, whatsapp_business_account_id, currency, order_id]",
    );
    assert_eq!(
        go(&wa_purchase()).key,
        Some(262198857965306755506530627902508232363)
    );
    assert_eq!(
        map_with(&plan(&every_part), &rules(), &wa_purchase()).key,
        Some(335033061764426341212757376865255379005)
    );
    let validate_only = Rules {
        payloads: false,
        ..rules()
    };
    assert_eq!(
        map_with(&plan(&every_part), &validate_only, &wa_purchase()).key,
        Some(335033061764426341212757376865255379005)
    );
}

/// The `user_data` of a row mapped with `mapping`.
fn user_data(mapping: &str, row: &[(&str, &str)]) -> (Mapped, serde_json::Value) {
    let m = map_with(&plan(mapping), &rules(), row);
    let v: serde_json::Value =
        serde_json::from_str(m.json.as_deref().expect("a valid row")).expect("JSON");
    (m, v["user_data"].clone())
}

#[test]
fn a_country_code_completes_numbers_written_without_one() {
    let mapping = ISSUE_EXAMPLE.replace(
        "ph: {column: phone, hash: sha256}",
        "ph: {column: phone, hash: sha256, country_code: 1}",
    );
    // Meta's worked example, written as it is (capi-spec.md §2): (650)555-1212 → 16505551212.
    let (_, u) = user_data(&mapping, &set(wa_purchase(), "phone", "(650)555-1212"));
    assert_eq!(
        u["ph"],
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    );
    // With an international prefix the number keeps its own code.
    let (_, u) = user_data(&mapping, &set(wa_purchase(), "phone", "+55 11 91234-5678"));
    assert_eq!(u["ph"], hash_pii(PiiKind::Phone, "5511912345678").unwrap());
    let (_, u) = user_data(&mapping, &set(wa_purchase(), "phone", "0055 11 91234-5678"));
    assert_eq!(u["ph"], hash_pii(PiiKind::Phone, "5511912345678").unwrap());
    // A national trunk zero goes: 020 7946 0018 in the UK is 44 20 7946 0018.
    let uk = mapping.replace("country_code: 1}", "country_code: 44}");
    let (_, u) = user_data(&uk, &set(wa_purchase(), "phone", "020 7946 0018"));
    assert_eq!(u["ph"], hash_pii(PiiKind::Phone, "442079460018").unwrap());
    // Without the option the digits are hashed as written.
    let (_, u) = user_data(ISSUE_EXAMPLE, &set(wa_purchase(), "phone", "(650)555-1212"));
    assert_eq!(u["ph"], hash_pii(PiiKind::Phone, "6505551212").unwrap());
}

#[test]
fn hash_none_contact_fields_must_already_be_hashes() {
    let mapping = ISSUE_EXAMPLE.replace(
        "em: {column: email, hash: sha256}",
        "em: {column: email, hash: none}",
    );
    let (m, u) = user_data(&mapping, &set(wa_purchase(), "email", "john@example.com"));
    assert_eq!(m.verdict, Verdict::Valid, "contact fields are optional");
    assert!(u.get("em").is_none(), "{u}");
    assert!(
        m.reason
            .contains("em omitted: is not a SHA-256 hash (the mapping says `hash: none`)"),
        "{}",
        m.reason
    );
    assert!(!m.reason.contains("john@"), "no raw PII in reasons");
    let upper = "62A14E44F765419D10FEA99367361A727C12365E2520F32218D505ED9AA0F62F";
    let (_, u) = user_data(&mapping, &set(wa_purchase(), "email", upper));
    assert_eq!(u["em"], upper.to_ascii_lowercase());
}

/// Cells changed from a valid row.
type Cells<'a> = &'a [(&'a str, &'a str)];

/// Every event rule, one line each: cells changed from a valid WhatsApp purchase (the issue's
/// mapping), and the verdict and exact reason they give. A new rule gets a line here.
#[test]
fn the_rules_as_a_table() {
    use Verdict::{Expired, Invalid, Valid};
    let h = "a".repeat(64);
    #[rustfmt::skip]
    let table: &[(Cells, Verdict, &str)] = &[
        // Required fields and their values.
        (&[], Valid, ""),
        (&[("chan", "")], Invalid, "channel is empty"),
        (&[("chan", "SMS")], Invalid, "channel value `SMS` is not in the mapping's `values` (FB, IG, WA)"),
        (&[("stage", "")], Invalid, "event_name is empty"),
        (&[("stage", "refund")], Invalid, "event_name value `refund` is not in the mapping's `values` (cart, lead, paid, shipped)"),
        (&[("occurred_at", "")], Invalid, "event_time is empty"),
        (&[("occurred_at", "yesterday")], Invalid, "event_time `yesterday` does not match RFC 3339, e.g. `2026-11-20T10:00:00Z`"),
        // The event_time window: 7 days minus the margin (1 h), and 60 s into the future.
        (&[("occurred_at", "2026-11-13T12:00:01Z")], Expired, "event_time 1794571201 is 7.0 days old; Meta accepts 7 days (minus a 3600s margin)"),
        (&[("occurred_at", "2026-11-13T13:00:00Z")], Valid, ""),
        (&[("occurred_at", "2026-11-20T12:01:00Z")], Valid, ""),
        (&[("occurred_at", "2026-11-20T12:01:01Z")], Invalid, "event_time 1795176061 is 61s in the future (more than 60s)"),
        // The channel's ids.
        (&[("waba_id", "")], Invalid, "whatsapp_business_account_id is empty; whatsapp events need it"),
        (&[("click_id", "")], Invalid, "ctwa_clid is empty; whatsapp events need it"),
        (&[("waba_id", "10229x")], Invalid, "whatsapp_business_account_id `10229x` is not an id (digits); whatsapp_business_account_id is empty; whatsapp events need it"),
        (&[("click_id", &h)], Invalid, "ctwa_clid looks hashed; channel ids must be sent unhashed; ctwa_clid is empty; whatsapp events need it"),
        (&[("chan", "FB")], Invalid, "page_id is empty; messenger events need it; page_scoped_user_id is empty; messenger events need it"),
        (&[("chan", "IG"), ("ig_account", "17841400123456789"), ("igsid", "555")], Valid, ""),
        // Purchase: currency and a non-negative value.
        (&[("amount", "")], Invalid, "Purchase needs value"),
        (&[("amount", "12,50")], Invalid, "value `12,50` is not a number (e.g. `12.50`)"),
        (&[("amount", "-1")], Invalid, "value -1 is negative"),
        (&[("currency", "usd")], Valid, ""),
        (&[("currency", "")], Valid, ""),
        (&[("currency", "XYZ")], Invalid, "currency `XYZ` is not an ISO 4217 code (e.g. USD, EUR, BRL)"),
        (&[("stage", "lead"), ("amount", ""), ("currency", "")], Valid, ""),
        // Contact fields: a bad optional one is left out with a note; the row stays valid.
        (&[("email", "not-an-email")], Valid, "em omitted: is not an email address"),
        (&[("phone", "12")], Valid, "ph omitted: is not a phone number with country code (7 to 15 digits)"),
        (&[("email", &h)], Valid, ""),
        // The dedup key must be complete.
        (&[("conv_id", "")], Invalid, "dedup key part `event_id` is empty; without it this event could not be told apart from others"),
        // Every problem of a row, not the first.
        (&[("chan", ""), ("stage", ""), ("amount", "-1")], Invalid, "channel is empty; event_name is empty; value -1 is negative"),
    ];
    for (cells, verdict, reason) in table {
        let mut row = wa_purchase();
        for (k, v) in *cells {
            row.retain(|(c, _)| c != k);
            row.push((k, v));
        }
        let m = go(&row);
        assert_eq!(
            (m.verdict, m.reason.as_str()),
            (*verdict, *reason),
            "cells {cells:?}"
        );
        assert_eq!(m.key.is_some(), *verdict == Valid, "cells {cells:?}");
        assert_eq!(m.json.is_some(), *verdict == Valid, "cells {cells:?}");
    }
}

#[test]
fn an_event_time_out_of_any_range_is_invalid_not_wrapped() {
    let unix = ISSUE_EXAMPLE.replace("format: rfc3339", "format: unix");
    for (now, t) in [
        (NOW, "-1e19"),
        (0, "-1e19"),
        (NOW, "1e19"),
        (NOW, "-9223372036854775808"),
    ] {
        let r = Rules { now, ..rules() };
        let m = map_with(&plan(&unix), &r, &set(wa_purchase(), "occurred_at", t));
        assert_eq!(m.verdict, Verdict::Invalid, "{t} at {now}: {}", m.reason);
        assert!(m.reason.contains("is not a time"), "{}", m.reason);
    }
}

#[test]
fn a_decimal_comma_reads_european_amounts() {
    let text = ISSUE_EXAMPLE.replace(
        "value: {column: amount, type: number}",
        "value: {column: amount, type: number, decimal: \",\"}",
    );
    let p = plan(&text);
    for (amount, want) in [("129,90", 129.9), ("1.299,90", 1299.9), ("7", 7.0)] {
        let m = map_with(&p, &rules(), &set(wa_purchase(), "amount", amount));
        assert_eq!(m.verdict, Verdict::Valid, "{amount}: {}", m.reason);
        let v: serde_json::Value = serde_json::from_str(m.json.as_deref().unwrap()).unwrap();
        assert_eq!(v["custom_data"]["value"], want, "{amount}");
    }
    let m = map_with(&p, &rules(), &set(wa_purchase(), "amount", "1,299.90"));
    assert_eq!(m.verdict, Verdict::Invalid);
    assert!(
        m.reason.contains("not a number with a decimal comma"),
        "{}",
        m.reason
    );
    assert!(!m.reason.contains("Purchase needs value"), "{}", m.reason);
}

#[test]
fn a_country_that_does_not_exist_is_left_out_with_a_note() {
    let text = ISSUE_EXAMPLE.replace(
        "  em: {column: email",
        "  country: {column: cc}\n  em: {column: email",
    );
    let p = plan(&text);
    let m = map_with(&p, &rules(), &set(wa_purchase(), "cc", "XX"));
    assert_eq!(m.verdict, Verdict::Valid);
    assert!(
        m.reason
            .contains("country omitted: is not an ISO 3166-1 alpha-2 country code"),
        "{}",
        m.reason
    );
    let m = map_with(&p, &rules(), &set(wa_purchase(), "cc", "BR"));
    assert_eq!(m.reason, "");
}

/// A table of accounts' datasets for `dataset_id: auto`.
struct Table(HashMap<&'static str, Lookup<'static>>);

impl AccountDatasets for Table {
    fn dataset(&self, _: Channel, account: &str) -> Lookup<'_> {
        self.0.get(account).copied().unwrap_or(Lookup::Pending)
    }
}

fn map_in(p: &Plan, accounts: &Table, cells: &[(&str, &str)]) -> Mapped {
    let by_name: HashMap<&str, &str> = cells.iter().copied().collect();
    let row: Vec<String> = p
        .columns
        .iter()
        .map(|c| by_name.get(c.as_str()).copied().unwrap_or("").to_string())
        .collect();
    map_row_in(p, &rules(), accounts, |i| row[i].as_str())
}

#[test]
fn dataset_auto_takes_the_accounts_dataset_and_keys_as_a_column_would() {
    let column = plan(&ISSUE_EXAMPLE.replacen(
        "dataset_id: \"1234567890\"",
        "dataset_id: {column: dataset}",
        1,
    ));
    let auto = plan(&ISSUE_EXAMPLE.replacen("dataset_id: \"1234567890\"", "dataset_id: auto", 1));
    assert!(auto.dataset_id.is_auto());
    assert!(!auto.columns.iter().any(|c| c == "dataset"));
    let known = Table(HashMap::from([
        ("102290129340398", Lookup::Known("1234567890")),
        ("102290129340399", Lookup::Unknown),
    ]));
    let row = wa_purchase();
    let by_column = map_with(
        &column,
        &rules(),
        &set(row.clone(), "dataset", "1234567890"),
    );
    let by_auto = map_in(&auto, &known, &row);
    assert_eq!(by_auto.verdict, Verdict::Valid, "{}", by_auto.reason);
    assert_eq!(by_auto.identity.dataset_id, "1234567890");
    assert_eq!(
        by_auto.key, by_column.key,
        "switching to auto sends nothing twice"
    );
    assert_eq!(by_auto.json, by_column.json);
    assert_eq!(by_auto.account.as_deref(), Some("102290129340398"));

    // Not asked yet: no key, no JSON, asked for by the mapper.
    let pending = map_in(
        &auto,
        &known,
        &set(row.clone(), "waba_id", "102290129340400"),
    );
    assert_eq!(pending.verdict, Verdict::Unresolved);
    assert!(pending.key.is_none() && pending.json.is_none());
    assert_eq!(pending.account.as_deref(), Some("102290129340400"));

    // Known not to be known (offline): keyed within its account, no dataset shown.
    let offline = map_in(
        &auto,
        &known,
        &set(row.clone(), "waba_id", "102290129340399"),
    );
    assert_eq!(offline.verdict, Verdict::Valid);
    assert_eq!(offline.identity.dataset_id, "");
    assert!(offline.key.is_some() && offline.key != by_auto.key);

    // An invalid row stays invalid, whatever its account.
    let invalid = map_in(&auto, &known, &set(row, "occurred_at", "yesterday"));
    assert_eq!(invalid.verdict, Verdict::Invalid);
}
