//! Every request shape Meta accepts, parsed into one form before any check runs.
//!
//! msgcapi and the Node SDK post a JSON body; the Python, PHP and Java SDKs and the curl examples
//! of Meta's docs post form fields (`application/x-www-form-urlencoded` or `multipart/form-data`),
//! with `data` as a JSON string, sometimes an array of JSON strings. The token may be in the body,
//! in the query string (the SDKs put it there) or in an `Authorization: OAuth|Bearer` header.
//! [`parse`] turns all of these into a [`Request`]: the top-level parameters as one map, the
//! token, the proof; [`events`] turns `data`, whatever its shape, into event objects.
//!
//! Pure: no I/O, no clock. Everything is bounded by the body, which the server bounds.

use std::io::Read;

use serde_json::{Map, Value};

/// The documented top-level parameters of `POST /{dataset}/events`, plus `id`, which the Node
/// SDK adds (the dataset's own id, as every SDK object write does).
pub(super) const PARAMS: [&str; 10] = [
    "data",
    "partner_agent",
    "test_event_code",
    "namespace_id",
    "upload_id",
    "upload_tag",
    "upload_source",
    "access_token",
    "appsecret_proof",
    "id",
];

/// How the body was sent, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Empty,
    Json,
    Form,
    Multipart,
}

impl Shape {
    pub(super) fn name(self) -> &'static str {
        match self {
            Shape::Empty => "empty",
            Shape::Json => "json",
            Shape::Form => "form",
            Shape::Multipart => "multipart",
        }
    }
}

/// One request, whatever shape it came in.
#[derive(Debug)]
pub(super) struct Request {
    pub shape: Shape,
    /// The top-level parameters: the body's, then those of [`PARAMS`] in the query string that
    /// the body lacks (other query parameters, such as Graph's `pretty` or `debug`, are not the
    /// endpoint's and are ignored). Form and query values are strings; JSON values are as sent.
    /// `Err` says why the body could not be read.
    pub params: Result<Map<String, Value>, String>,
    /// `access_token` from the body, else the `Authorization` header, else the query string.
    pub token: Option<String>,
    /// `appsecret_proof` from the body, else the query string.
    pub proof: Option<String>,
}

/// Parses a request's parameters. `content_type` and `authorization` are the header values.
pub(super) fn parse(
    content_type: Option<&str>,
    authorization: Option<&str>,
    query: &str,
    body: &[u8],
) -> Request {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let (shape, body_params) = if body.iter().all(u8::is_ascii_whitespace) {
        (Shape::Empty, Ok(Map::new()))
    } else {
        match media.as_deref() {
            Some("application/x-www-form-urlencoded") => (Shape::Form, Ok(form(body))),
            Some("multipart/form-data") => (
                Shape::Multipart,
                content_type
                    .and_then(boundary)
                    .ok_or_else(|| {
                        "The multipart/form-data body has no `boundary` in its Content-Type"
                            .to_string()
                    })
                    .and_then(|b| multipart(body, &b)),
            ),
            _ => (Shape::Json, json_object(body)),
        }
    };
    let query = form(query.as_bytes());
    let body_str = |k: &str| match &body_params {
        Ok(m) => m.get(k).and_then(Value::as_str).map(String::from),
        Err(_) => None,
    };
    let query_str = |k: &str| query.get(k).and_then(Value::as_str).map(String::from);
    let token = body_str("access_token")
        .or_else(|| authorization.and_then(auth_token))
        .or_else(|| query_str("access_token"));
    let proof = body_str("appsecret_proof").or_else(|| query_str("appsecret_proof"));
    let params = body_params.map(|mut m| {
        for (k, v) in query {
            if PARAMS.contains(&k.as_str()) {
                m.entry(k).or_insert(v);
            }
        }
        m
    });
    Request {
        shape,
        params,
        token,
        proof,
    }
}

/// The token of an `Authorization: OAuth <token>` or `Authorization: Bearer <token>` header.
fn auth_token(header: &str) -> Option<String> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    ((scheme.eq_ignore_ascii_case("oauth") || scheme.eq_ignore_ascii_case("bearer"))
        && !token.is_empty())
    .then(|| token.to_string())
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(
            "The body must be a JSON object, form fields (application/x-www-form-urlencoded) \
             or multipart/form-data"
                .to_string(),
        ),
    }
}

/// `application/x-www-form-urlencoded` fields (also a query string); a repeated name keeps its
/// last value, as PHP-style parsers do.
pub(super) fn form(s: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    for pair in s.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        m.insert(url_decode(k), Value::String(url_decode(v)));
    }
    m
}

/// Percent-decoding with `+` as a space; a `%` not followed by two hex digits stays as it is.
fn url_decode(b: &[u8]) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    // Two hex digits: at most 0xff.
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `boundary` parameter of a multipart Content-Type, unquoted.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        // RFC 2046: 1 to 70 characters.
        (1..=70).contains(&v.len()).then(|| v.to_string())
    })
}

/// `multipart/form-data` fields (RFC 7578), as text: the events endpoint takes no files. A
/// repeated name keeps its last value. Linear in the body (`str::find` is two-way search).
fn multipart(body: &[u8], boundary: &str) -> Result<Map<String, Value>, String> {
    let bad = |why: &str| Err(format!("The multipart/form-data body is malformed: {why}"));
    let Ok(body) = std::str::from_utf8(body) else {
        return bad("it is not UTF-8 text");
    };
    let delimiter = format!("--{boundary}");
    let Some(start) = body.find(&delimiter) else {
        return bad("no part starts with the boundary");
    };
    // Each part ends at a line break followed by the delimiter.
    let close = format!("\n{delimiter}");
    let mut rest = &body[start + delimiter.len()..];
    let mut m = Map::new();
    loop {
        if rest.starts_with("--") {
            return Ok(m);
        }
        let Some(part) = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.strip_prefix('\n'))
        else {
            return bad("a boundary is not followed by a line break");
        };
        let Some(end) = part.find(&close) else {
            return bad("the closing boundary is missing");
        };
        let Some((headers, value)) = split_part(&part[..end]) else {
            return bad("a part has no blank line after its headers");
        };
        let Some(name) = headers.lines().find_map(field_name) else {
            return bad("a part has no `Content-Disposition: form-data; name=...`");
        };
        let value = value.strip_suffix('\r').unwrap_or(value);
        m.insert(name, Value::String(value.to_string()));
        rest = &part[end + close.len()..];
    }
}

/// A part's headers and content, split at the first blank line (CRLF or bare LF).
fn split_part(part: &str) -> Option<(&str, &str)> {
    let crlf = part.find("\r\n\r\n").map(|i| (i, 4));
    let lf = part.find("\n\n").map(|i| (i, 2));
    let (i, n) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&part[..i], &part[i + n..]))
}

/// The `name` of a `Content-Disposition: form-data; name="..."` header line.
fn field_name(line: &str) -> Option<String> {
    let (h, v) = line.split_once(':')?;
    if !h.trim().eq_ignore_ascii_case("content-disposition") {
        return None;
    }
    let mut params = v.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("name").then(|| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_string()
        })
    })
}

/// Gunzips a `Content-Encoding: gzip` body, reading at most `max` bytes of output (a small
/// body may inflate to gigabytes). `Err` is an HTTP status and a message.
pub(super) fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, (u16, &'static str)> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| (400, "Invalid gzip body"))?;
    if out.len() > max {
        return Err((413, "Request body too large or unreadable"));
    }
    Ok(out)
}

/// `data`, whatever its shape, as event objects: a JSON array of objects, a JSON string holding
/// that array, or an array whose elements are JSON strings holding one object each (the Python
/// SDK's form). Takes `data` out of `params` (no copy). `Err` is the message of a code-100
/// rejection.
pub(super) fn events(params: &mut Map<String, Value>) -> Result<Vec<Value>, String> {
    let required = || "The parameter `data` is required and must be an array".to_string();
    let list = match params.remove("data") {
        None | Some(Value::Null) => return Err(required()),
        Some(Value::Array(a)) => a,
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Array(a)) => a,
            Ok(_) => return Err(required()),
            Err(e) => return Err(format!("The parameter `data` is not a JSON array: {e}")),
        },
        Some(_) => return Err(required()),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, e)| match e {
            Value::Object(_) => Ok(e),
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(o @ Value::Object(_)) => Ok(o),
                _ => Err(format!("data[{i}] is not an event object")),
            },
            _ => Err(format!("data[{i}] is not an event object")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(r: &Request) -> &Map<String, Value> {
        r.params.as_ref().expect("params")
    }

    #[test]
    fn form_fields_and_url_decoding() {
        let m = form(b"access_token=a%2Bb&data=%5B%5D&x=1+2&bad=%zz%4&empty&k=v1&k=v2");
        assert_eq!(m["access_token"], "a+b");
        assert_eq!(m["data"], "[]");
        assert_eq!(m["x"], "1 2");
        assert_eq!(m["bad"], "%zz%4");
        assert_eq!(m["empty"], "");
        assert_eq!(m["k"], "v2");
        assert_eq!(form(b"caf%C3%A9=%E2%82%AC")["café"], "€");
    }

    #[test]
    fn json_body_token_in_body() {
        let r = parse(
            Some("application/json"),
            None,
            "",
            br#"{"data": [], "access_token": "t", "appsecret_proof": "p"}"#,
        );
        assert_eq!(r.shape, Shape::Json);
        assert_eq!(r.token.as_deref(), Some("t"));
        assert_eq!(r.proof.as_deref(), Some("p"));
        assert_eq!(params(&r)["data"], json!([]));
    }

    #[test]
    fn the_token_from_body_then_header_then_query() {
        let body = b"access_token=body";
        let r = parse(
            Some("application/x-www-form-urlencoded"),
            Some("Bearer hdr"),
            "access_token=query",
            body,
        );
        assert_eq!(r.token.as_deref(), Some("body"));
        let r = parse(None, Some("OAuth hdr"), "access_token=query", b"");
        assert_eq!(r.token.as_deref(), Some("hdr"));
        let r = parse(None, Some("oauth   hdr "), "", b"");
        assert_eq!(r.token.as_deref(), Some("hdr"));
        let r = parse(None, Some("Basic abc"), "access_token=q%2B1", b"");
        assert_eq!(r.token.as_deref(), Some("q+1"));
        let r = parse(None, Some("Bearer "), "", b"");
        assert_eq!(r.token, None);
        let r = parse(None, None, "appsecret_proof=abc", b"{}");
        assert_eq!(r.proof.as_deref(), Some("abc"));
    }

    #[test]
    fn query_fills_in_what_the_body_lacks() {
        let r = parse(
            Some("application/json"),
            None,
            "test_event_code=Q&data=%5B%5D&pretty=0",
            br#"{"data": [{}]}"#,
        );
        assert_eq!(params(&r)["data"], json!([{}]));
        assert_eq!(params(&r)["test_event_code"], "Q");
        assert!(!params(&r).contains_key("pretty"));
        let r = parse(None, None, "data=%5B%5D", b"");
        assert_eq!(r.shape, Shape::Empty);
        assert_eq!(params(&r)["data"], "[]");
    }

    #[test]
    fn unreadable_bodies_say_why() {
        let r = parse(Some("application/json"), None, "access_token=t", b"{nope");
        assert!(r.params.is_err());
        assert_eq!(r.token.as_deref(), Some("t"));
        assert!(parse(None, None, "", b"[1]").params.is_err());
        let r = parse(Some("multipart/form-data"), None, "", b"--x\r\n");
        assert!(r.params.unwrap_err().contains("boundary"));
    }

    const MP: &str = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n[{\"a\":1}]\r\n--XyZ\r\ncontent-disposition: form-data; name=access_token\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n\r\n\r\n--XyZ--\r\nepilogue";

    #[test]
    fn multipart_fields() {
        let r = parse(
            Some("multipart/form-data; charset=utf-8; boundary=\"XyZ\""),
            None,
            "",
            MP.as_bytes(),
        );
        assert_eq!(r.shape, Shape::Multipart);
        let m = params(&r);
        assert_eq!(m["data"], "[{\"a\":1}]");
        assert_eq!(m["access_token"], "line1\r\nline2");
        assert_eq!(m["file"], "");
        assert_eq!(r.token.as_deref(), Some("line1\r\nline2"));
        // Bare LF line breaks, as some hand-written clients send.
        let lf = "--b\nContent-Disposition: form-data; name=\"k\"\n\nv\n--b--\n";
        assert_eq!(multipart(lf.as_bytes(), "b").unwrap()["k"], "v");
    }

    #[test]
    fn malformed_multipart_is_an_error_not_a_panic() {
        for body in [
            "",
            "no boundary here",
            "--XyZ",
            "--XyZ\r\n",
            "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv",
            "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nv\r\n--XyZ--",
            "--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--",
            "--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--XyZ--",
            "--XyZjunk",
        ] {
            assert!(multipart(body.as_bytes(), "XyZ").is_err(), "{body:?}");
        }
        assert!(multipart(b"--b\r\n\xff\xfe", "b").is_err());
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
        assert_eq!(
            boundary("multipart/form-data; BOUNDARY=abc").as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn data_in_every_shape_meta_accepts() {
        let ev = json!({"event_name": "Purchase"});
        let want = Ok(vec![ev.clone()]);
        let p = |data: Value| {
            let mut m = Map::new();
            m.insert("data".into(), data);
            events(&mut m)
        };
        assert_eq!(p(json!([ev])), want);
        assert_eq!(p(json!(json!([ev]).to_string())), want);
        assert_eq!(p(json!([ev.to_string()])), want);
        // The Python SDK's form field: a JSON string of an array of JSON strings.
        assert_eq!(p(json!(json!([ev.to_string()]).to_string())), want);
        assert_eq!(p(json!([])), Ok(vec![]));
        assert!(events(&mut Map::new()).unwrap_err().contains("required"));
        assert!(p(Value::Null).unwrap_err().contains("required"));
        assert!(p(json!({"a": 1})).unwrap_err().contains("required"));
        assert!(p(json!("{}")).unwrap_err().contains("required"));
        assert!(p(json!("[nope")).unwrap_err().contains("not a JSON array"));
        assert_eq!(
            p(json!([ev, 1])),
            Err("data[1] is not an event object".into())
        );
        assert_eq!(
            p(json!(["[1]"])),
            Err("data[0] is not an event object".into())
        );
        // No deeper nesting than the SDKs send.
        let twice = json!(json!(ev.to_string()).to_string());
        assert_eq!(
            p(json!([twice])),
            Err("data[0] is not an event object".into())
        );
    }

    #[test]
    fn gunzip_is_bounded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &[b'a'; 1000]).unwrap();
        let z = gz.finish().unwrap();
        assert_eq!(gunzip(&z, 1000).unwrap().len(), 1000);
        assert_eq!(gunzip(&z, 999).unwrap_err().0, 413);
        assert!(gunzip(b"not gzip", 1000).is_err());
    }
}
