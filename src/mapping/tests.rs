use super::*;

/// The example mapping from issue 2, verbatim: a public contract.
pub const ISSUE_EXAMPLE: &str = include_str!("issue_example.yaml");

fn no_env(_: &str) -> Option<String> {
    None
}

fn compile(text: &str) -> Result<Plan, MappingError> {
    Plan::compile(Path::new("m.yaml"), text, &no_env)
}

fn err(text: &str) -> String {
    match compile(text) {
        Ok(_) => panic!("expected a mapping error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn issue_example_compiles() {
    let p = compile(ISSUE_EXAMPLE).unwrap();
    assert_eq!(
        p.columns,
        [
            "chan",
            "stage",
            "occurred_at",
            "conv_id",
            "waba_id",
            "click_id",
            "page_id",
            "psid",
            "ig_account",
            "igsid",
            "email",
            "phone",
            "amount",
            "currency",
            "order_ref"
        ]
    );
    assert_eq!(p.partner_agent.as_deref(), Some("acme-bsp"));
    assert_eq!(p.event_time.format, TimeFormat::Rfc3339);
    assert_eq!(p.dedup_key, vec![KeyPart::EventId]);
    let em = p.user_data.iter().find(|(u, _)| u.name() == "em").unwrap();
    assert_eq!(em.1.hash, Some(PiiKind::Email));
    let value = p.custom_data.iter().find(|f| f.name == "value").unwrap();
    assert_eq!(value.ty, ValueType::Number);
}

#[test]
fn default_dedup_key_without_event_id_uses_channel_ids_name_and_time() {
    let text = ISSUE_EXAMPLE
        .replace("event_id: {column: conv_id}\n", "")
        .replace("dedup:\n  key: [event_id]", "");
    let p = compile(&text).unwrap();
    let names: Vec<&str> = p.dedup_key.iter().map(KeyPart::name).collect();
    assert_eq!(
        names,
        [
            "channel",
            "whatsapp_business_account_id",
            "ctwa_clid",
            "page_id",
            "page_scoped_user_id",
            "instagram_business_account_id",
            "ig_sid",
            "event_name",
            "event_time"
        ]
    );
}

#[test]
fn env_source_is_resolved_once() {
    let text = ISSUE_EXAMPLE.replace(
        "dataset_id: \"1234567890\"",
        "dataset_id: {env: MSGCAPI_DATASET_ID}",
    );
    let env = |v: &str| (v == "MSGCAPI_DATASET_ID").then(|| "555".to_string());
    let p = Plan::compile(Path::new("m.yaml"), &text, &env).unwrap();
    let DatasetSource::Field(d) = &p.dataset_id else {
        panic!("a dataset id field")
    };
    assert_eq!(d.src, Src::Constant("555".into()));
    insta::assert_snapshot!(err(&text), @r"
    m.yaml:1:13: `dataset_id.env`: environment variable `MSGCAPI_DATASET_ID` is not set
      hint: export MSGCAPI_DATASET_ID=... before running, or use a constant
    ");
}

#[test]
fn unknown_top_level_key_names_line_and_column() {
    let text = ISSUE_EXAMPLE.replace(
        "partner_agent: acme-bsp",
        "partner_agent: acme-bsp\nchanel: whatsapp",
    );
    insta::assert_snapshot!(err(&text));
}

#[test]
fn unknown_key_inside_a_field() {
    let text = ISSUE_EXAMPLE.replace(
        "{column: amount, type: number}",
        "{colum: amount, type: number}",
    );
    insta::assert_snapshot!(err(&text));
}

#[test]
fn bad_type_and_bad_format_and_bad_zone() {
    insta::assert_snapshot!(err(&ISSUE_EXAMPLE.replace("type: number", "type: money")), @r"
    m.yaml:24:10: `custom_data.value.type`: unknown type `money`; expected one of `string`, `number`, `integer`, `bool`, `list`, `json`
    ");
    insta::assert_snapshot!(err(&ISSUE_EXAMPLE.replace("format: rfc3339 ", "format: iso     ")), @r"
    m.yaml:10:3: `event_time.format`: unknown time format `iso`; expected one of `unix`, `unix_ms`, `rfc3339`, or a strftime pattern such as `%Y-%m-%d %H:%M:%S`
    ");
    insta::assert_snapshot!(err(&ISSUE_EXAMPLE.replace("timezone: UTC", "timezone: Mars/Olympus")), @r"
    m.yaml:10:3: `event_time.timezone`: unknown time zone `Mars/Olympus`
      hint: use an IANA name such as `UTC`, `America/Sao_Paulo` or `Asia/Kolkata`
    ");
}

#[test]
fn value_map_targets_must_be_allowed() {
    insta::assert_snapshot!(err(&ISSUE_EXAMPLE.replace("paid: Purchase", "paid: Buy")), @r"
    m.yaml:7:3: `event_name`: value map target `Buy` is not allowed; expected one of `Purchase`, `LeadSubmitted`, `InitiateCheckout`, `AddToCart`, `ViewContent`, `OrderCreated`, `OrderShipped`, `OrderDelivered`, `OrderCanceled`, `OrderReturned`, `CartAbandoned`, `QualifiedLead`, `RatingProvided`, `ReviewProvided`
    ");
    let custom = ISSUE_EXAMPLE
        .replace("paid: Purchase", "paid: Buy")
        .replace(
            "partner_agent: acme-bsp",
            "partner_agent: acme-bsp\nallow_custom_event_names: true",
        );
    assert!(compile(&custom).is_ok());
    assert!(
        err(&ISSUE_EXAMPLE.replace("IG: instagram", "IG: insta"))
            .contains("`insta` is not allowed")
    );
}

#[test]
fn channel_ids_are_never_hashed() {
    insta::assert_snapshot!(err(&ISSUE_EXAMPLE.replace("ctwa_clid: {column: click_id}", "ctwa_clid: {column: click_id, hash: sha256}")), @r"
    m.yaml:16:14: `user_data.ctwa_clid.hash`: `ctwa_clid` is a channel id and is never hashed (Meta matches it as is)
      hint: remove `hash:` from this field
    ");
    // `hash: none` too: a channel id has no hashing to switch off, so the key is a mistake.
    let e = err(&ISSUE_EXAMPLE.replace(
        "ctwa_clid: {column: click_id}",
        "ctwa_clid: {column: click_id, hash: none}",
    ));
    assert!(
        e.contains("`ctwa_clid` is a channel id and is never hashed"),
        "{e}"
    );
}

#[test]
fn unknown_user_data_field_lists_the_known_ones() {
    let e = err(&ISSUE_EXAMPLE.replace("ph: {column: phone", "phone: {column: phone"));
    assert!(e.starts_with("m.yaml:22:10: `user_data.phone`: unknown user_data field `phone`; expected one of `whatsapp_business_account_id`"), "{e}");
}

#[test]
fn a_field_given_twice_is_an_error() {
    let e = err(&ISSUE_EXAMPLE.replace(
        "  order_id: {column: order_ref}",
        "  order_id: {column: order_ref}\n  order_id: {column: conv_id}",
    ));
    assert!(e.contains("`order_id` is given twice"), "{e}");
}

#[test]
fn dataset_constant_must_be_digits() {
    assert!(
        err(&ISSUE_EXAMPLE.replace("\"1234567890\"", "acme"))
            .contains("`acme` is not a dataset id")
    );
}

#[test]
fn field_needs_exactly_one_source() {
    insta::assert_snapshot!(err(&ISSUE_EXAMPLE.replace("order_id: {column: order_ref}", "order_id: {column: order_ref, constant: x}")), @r"
    m.yaml:26:13: `custom_data.order_id`: has more than one source
      hint: give exactly one of `column: NAME`, `constant: VALUE` or `env: VARIABLE`
    ");
}

#[test]
fn dedup_key_must_name_mapped_fields() {
    let e = err(&ISSUE_EXAMPLE.replace("key: [event_id]", "key: [conv_id]"));
    assert!(
        e.contains("`dedup.key`: `conv_id` is not a field of this mapping"),
        "{e}"
    );
}

#[test]
fn missing_required_key_and_yaml_syntax_error() {
    let e = err("dataset_id: \"1\"\nchannel: whatsapp\nevent_name: Purchase\n");
    assert!(e.starts_with("m.yaml:"), "{e}");
    assert!(e.contains("event_time"), "{e}");
    let e = err("dataset_id: [unclosed\n");
    assert!(e.starts_with("m.yaml:"), "{e}");
}

#[test]
fn strftime_patterns_are_checked() {
    let ok = ISSUE_EXAMPLE.replace("format: rfc3339", "format: \"%d/%m/%Y %H:%M\"");
    assert_eq!(
        compile(&ok).unwrap().event_time.format,
        TimeFormat::Pattern("%d/%m/%Y %H:%M".into())
    );
    assert!(
        err(&ISSUE_EXAMPLE.replace("format: rfc3339", "format: \"%H:%M\"")).contains("has no year")
    );
}

#[test]
fn ldu_country_needs_state() {
    let text = format!(
        "{ISSUE_EXAMPLE}data_processing_options: [LDU]\ndata_processing_options_country: 1\n"
    );
    assert!(err(&text).contains("data_processing_options_state"));
    let text = format!(
        "{ISSUE_EXAMPLE}data_processing_options: [LDU]\ndata_processing_options_country: 1\ndata_processing_options_state: 1000\n"
    );
    assert_eq!(
        compile(&text).unwrap().data_processing_options,
        Some(Ldu {
            options: vec!["LDU".to_string()],
            country: Some(1),
            state: Some(1000)
        })
    );
    let ldu = |rest: &str| format!("{ISSUE_EXAMPLE}data_processing_options: [LDU]\n{rest}");
    let e = err(&ldu("data_processing_options_state: 1000\n"));
    assert!(
        e.contains("data_processing_options_country")
            && e.contains("is required when a state is given"),
        "{e}"
    );
    let e = err(&ldu(
        "data_processing_options_country: 2\ndata_processing_options_state: 1000\n",
    ));
    assert!(e.contains("`2` is not a country Meta knows for LDU"), "{e}");
    let e = err(&ldu(
        "data_processing_options_country: 1\ndata_processing_options_state: 5\n",
    ));
    assert!(e.contains("`5` is not a state Meta knows for LDU"), "{e}");
    assert!(
        compile(&ldu(
            "data_processing_options_country: 0\ndata_processing_options_state: 0\n"
        ))
        .is_ok()
    );
}

#[test]
fn value_must_stay_a_number() {
    let text = ISSUE_EXAMPLE.replace(
        "value: {column: amount, type: number}",
        "value: {column: amount, type: string}",
    );
    assert_ne!(text, ISSUE_EXAMPLE);
    let e = err(&text);
    assert!(
        e.contains("custom_data.value.type") && e.contains("Meta requires value to be a number"),
        "{e}"
    );
    let text = ISSUE_EXAMPLE.replace(
        "value: {column: amount, type: number}",
        "value: {column: amount, type: integer}",
    );
    assert!(compile(&text).is_ok());
}

#[test]
fn missing_column_error_points_at_the_mapping() {
    let p = compile(ISSUE_EXAMPLE).unwrap();
    let e = p.missing_columns_error(
        "export.csv",
        &["click_id".into()],
        &["chan".into(), "stage".into()],
    );
    insta::assert_snapshot!(e.to_string(), @r"
    m.yaml:16:14: `user_data.ctwa_clid`: column `click_id` not in the header of `export.csv`
      hint: the header has `chan`, `stage`
    ");
}

#[test]
fn country_code_belongs_to_a_hashed_ph_and_is_a_calling_code() {
    let with = |from: &str, to: &str| {
        let text = ISSUE_EXAMPLE.replace(from, to);
        assert_ne!(text, ISSUE_EXAMPLE, "the example has `{from}`");
        text
    };
    let ph = "ph: {column: phone, hash: sha256}";
    let p = compile(&with(ph, "ph: {column: phone, country_code: \"+55\"}")).unwrap();
    let (_, f) = p
        .user_data
        .iter()
        .find(|(u, _)| *u == UserField::Ph)
        .unwrap();
    assert_eq!(f.country_code, Some(55));
    let e = err(&with(ph, "ph: {column: phone, country_code: usa}"));
    assert!(
        e.contains("user_data.ph.country_code")
            && e.contains("`usa` is not a country calling code"),
        "{e}"
    );
    let e = err(&with(ph, "ph: {column: phone, country_code: 1000}"));
    assert!(e.contains("is not a country calling code"), "{e}");
    let e = err(&with(
        ph,
        "ph: {column: phone, hash: none, country_code: 1}",
    ));
    assert!(
        e.contains("with `hash: none` the export already holds hashes"),
        "{e}"
    );
    let e = err(&with(
        "em: {column: email, hash: sha256}",
        "em: {column: email, country_code: 1}",
    ));
    assert!(
        e.contains("user_data.em.country_code") && e.contains("only `user_data.ph`"),
        "{e}"
    );
    let e = err(&with(
        "order_id: {column: order_ref}",
        "order_id: {column: order_ref, country_code: 1}",
    ));
    assert!(
        e.contains("only `user_data.ph` takes a country code"),
        "{e}"
    );
}

#[test]
fn a_constant_channel_needs_its_ids_mapped() {
    let text = "dataset_id: \"1\"\nchannel: whatsapp\nevent_name: Purchase\nevent_time: {column: ts}\nuser_data:\n  ctwa_clid: {column: clid}\n";
    let e = err(text);
    assert!(
        e.starts_with("m.yaml:2:10: `channel`: is always `whatsapp`, whose events need `user_data.whatsapp_business_account_id`"),
        "{e}"
    );
    // From a column, the check stays per row (other rows may be other channels).
    let from_column = text.replace("channel: whatsapp", "channel: {column: chan}");
    assert!(compile(&from_column).is_ok());
}

#[test]
fn custom_keys_close_to_documented_ones_are_warned_about() {
    let text = ISSUE_EXAMPLE.replace(
        "  order_id: {column: order_ref}",
        "  order_id: {column: order_ref}\n  orderid: {column: x}\n  curency_code: {column: y}\n  my_field: {column: z}",
    );
    let p = compile(&text).unwrap();
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("`custom_data.orderid`: did you mean `order_id`?"),
        "{}",
        w[0]
    );
    for typo in ["curency", "contents_ids", "Currency", "predicted_ltvv"] {
        let t = ISSUE_EXAMPLE.replace(
            "  order_id: {column: order_ref}",
            &format!("  {typo}: {{column: order_ref}}"),
        );
        assert_eq!(compile(&t).unwrap().warnings.len(), 1, "{typo}");
    }
    let p = compile(ISSUE_EXAMPLE).unwrap();
    assert!(p.warnings.is_empty());
}

#[test]
fn decimal_is_a_comma_or_a_point_on_numbers() {
    let with = |d: &str| {
        ISSUE_EXAMPLE.replace(
            "value: {column: amount, type: number}",
            &format!("value: {{column: amount, type: number, decimal: \"{d}\"}}"),
        )
    };
    assert!(compile(&with(",")).unwrap().custom_data[0].decimal_comma);
    assert!(!compile(&with(".")).unwrap().custom_data[0].decimal_comma);
    assert!(
        err(&with(";")).contains("`custom_data.value.decimal`: `;` is not a decimal separator")
    );
    let on_text = ISSUE_EXAMPLE.replace(
        "order_id: {column: order_ref}",
        "order_id: {column: order_ref, decimal: \",\"}",
    );
    assert!(err(&on_text).contains("applies to numbers only"));
}
