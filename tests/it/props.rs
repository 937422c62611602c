//! Property: the report has exactly one line per input data row, whatever the CSV holds
//! (quotes, embedded newlines and delimiters, short and long rows, invalid UTF-8, blanks).

use proptest::prelude::*;

use crate::util::*;

const HEADER: &str = "chan,stage,occurred_at,conv_id,dataset,waba_id,click_id,page_id,psid,ig_account,igsid,email,phone,amount,currency,order_ref";

fn cell() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"WA".to_vec()),
        Just(b"paid".to_vec()),
        Just(b"2026-11-19T10:00:00Z".to_vec()),
        Just(b"1234567890".to_vec()),
        Just(Vec::new()),
        Just(b"\"quoted, with comma\"".to_vec()),
        Just(b"\"multi\nline\"".to_vec()),
        Just(b"\"with \"\"escaped\"\" quotes\"".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        "[a-z0-9 @.+-]{0,12}".prop_map(String::into_bytes),
    ]
}

/// A data row: usually 16 cells, sometimes fewer or more.
fn row() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![8 => proptest::collection::vec(cell(), 16), 1 => proptest::collection::vec(cell(), 1..25)].prop_map(|cells| cells.join(&b","[..]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn report_lines_equal_input_rows(rows in proptest::collection::vec(row(), 0..40), crlf in any::<bool>()) {
        let w = Workdir::new();
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(eol);
        let mut expected = 0;
        for r in &rows {
            // The CSV format cannot tell an empty line from no row; the reader skips blank lines.
            if r.is_empty() { continue; }
            bytes.extend_from_slice(r);
            bytes.extend_from_slice(eol);
            expected += 1;
        }
        std::fs::write(w.path("p.csv"), &bytes).unwrap();
        let m = w.copy("mappings/mixed.yaml");
        let out = w.run(&["validate", "--mapping", m.to_str().unwrap(), "--now", NOW, "--report", "r.csv", "--quiet", "p.csv"]);
        prop_assert!(code(&out) <= 1, "exit {} {}", code(&out), stderr(&out));
        let report = report_rows(&w.read("r.csv"));
        prop_assert_eq!(report.len(), expected);
        for (i, r) in report.iter().enumerate() {
            prop_assert_eq!(r[1].parse::<usize>().unwrap(), i + 1);
        }
    }
}
