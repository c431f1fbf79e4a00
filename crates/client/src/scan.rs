//! Reading a message's shape from its structure alone: the load generator
//! needs each reply's type, request id, datasource and number of results,
//! and reading tens of megabytes of results to count them must cost it far
//! less than producing them costs the server. The scanner walks strings with
//! `memchr` and counts an array's elements by its commas. It reads the
//! server's own output, not arbitrary JSON: it does not validate every
//! byte (a mismatched bracket inside a value goes unnoticed), and whatever
//! it does not expect (an escaped key, a truncated message, a missing
//! type) makes it give up, so the caller decodes the message with
//! serde_json instead.

use memchr::memchr2;

/// What the scanner found in one message.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Shape<'a> {
    pub kind: &'a str,
    /// The request id as written (JSON).
    pub request_id: Option<&'a str>,
    pub server: Option<&'a str>,
    pub results: Option<u64>,
}

pub(crate) fn shape(text: &str) -> Option<Shape<'_>> {
    let b = text.as_bytes();
    let mut shape = Shape::default();
    let mut kind = None;
    let mut i = open(b, whitespace(b, 0), b'{')?;
    while let Some((key, at)) = next_key(text, &mut i)? {
        i = match key {
            "type" => {
                let (value, end) = string(text, at)?;
                kind = Some(value);
                end
            }
            "request-id" => {
                let end = skip(b, at)?;
                shape.request_id = Some(&text[at..end]);
                end
            }
            "items" if b.get(at) == Some(&b'{') => {
                let mut j = open(b, at, b'{')?;
                while let Some((key, at)) = next_key(text, &mut j)? {
                    j = match key {
                        "server" => {
                            let (value, end) = string(text, at)?;
                            shape.server = Some(value);
                            end
                        }
                        "results" => {
                            let (count, end) = count(b, at)?;
                            shape.results = Some(count);
                            end
                        }
                        _ => skip(b, at)?,
                    };
                }
                j
            }
            _ => skip(b, at)?,
        };
    }
    shape.kind = kind?;
    // Nothing but whitespace may follow the object.
    (whitespace(b, i) == b.len()).then_some(shape)
}

fn whitespace(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// Past the opening `what` at `i`.
fn open(b: &[u8], i: usize, what: u8) -> Option<usize> {
    (b.get(i) == Some(&what)).then_some(i + 1)
}

/// The next key of an object whose members start at `*i` (just past `{` or
/// a member), and where its value starts; `None` at the object's end, with
/// `*i` past it. `Err`-like `None` (outer) when malformed.
fn next_key<'a>(text: &'a str, i: &mut usize) -> Option<Option<(&'a str, usize)>> {
    let b = text.as_bytes();
    let mut j = whitespace(b, *i);
    match b.get(j)? {
        b'}' => {
            *i = j + 1;
            return Some(None);
        }
        b',' => j = whitespace(b, j + 1),
        _ => {}
    }
    let (key, end) = string(text, j)?;
    let colon = whitespace(b, end);
    let at = whitespace(b, open(b, colon, b':')?);
    *i = at;
    Some(Some((key, at)))
}

/// The string at `i` (without escapes: one with escapes is given up on)
/// and the position past it.
fn string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let start = open(b, i, b'"')?;
    let end = start + memchr2(b'"', b'\\', b.get(start..)?)?;
    (b[end] == b'"').then(|| (&text[start..end], end + 1))
}

/// Past the string at `i`, escapes allowed.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        j += 2; // a backslash and the character it escapes
    }
}

/// Past the value at `i`.
fn skip(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => nested(b, i).map(|(_, end)| end),
        _ => {
            let mut j = i;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            ) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The number of elements of the array at `i` and the position past it.
fn count(b: &[u8], i: usize) -> Option<(u64, usize)> {
    open(b, i, b'[')?;
    if b.get(whitespace(b, i + 1)) == Some(&b']') {
        return Some((0, whitespace(b, i + 1) + 1));
    }
    nested(b, i)
}

/// Walks the array or object at `i` to its end: the number of its members
/// (commas at its own depth, plus one) and the position past it.
fn nested(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let mut depth = 0u32;
    let mut members = 1;
    let mut j = i;
    loop {
        match *b.get(j)? {
            b'"' => {
                j = skip_string(b, j)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some((members, j + 1));
                }
            }
            b',' if depth == 1 => members += 1,
            _ => {}
        }
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shape_of_replies() {
        let text = r#"{"type":"ITEMS_RECEIVE","items":{"server":"tweets","query":"a \"b\"","total":3,"from":0,
            "results":[{"id":"1","fields":{"t":"x, y","n":[1,2],"o":{"a":"}]"}},"highlight":null},
                       {"id":"2\\","fields":{}},{"id":"3","fields":{"e":"\\\""}}]},"request-id":7}"#;
        let shape = shape(text).expect("read");
        assert_eq!(shape.kind, "ITEMS_RECEIVE");
        assert_eq!(shape.server, Some("tweets"));
        assert_eq!(shape.results, Some(3));
        assert_eq!(shape.request_id, Some("7"));
        let empty = shape_of(
            r#"{ "type" : "ITEMS_RECEIVE" , "items" : { "server" : "s" , "results" : [ ] } , "request-id" : "x" }"#,
        );
        assert_eq!((empty.results, empty.request_id), (Some(0), Some(r#""x""#)));
        let done = shape_of(
            r#"{"type":"REQUEST_COMPLETED","request-id":1,"outcomes":{"a":{"took_ms":1}}}"#,
        );
        assert_eq!((done.kind, done.results), ("REQUEST_COMPLETED", None));
    }

    fn shape_of(text: &str) -> Shape<'_> {
        shape(text).expect("read")
    }

    #[test]
    fn gives_up_on_what_it_does_not_expect() {
        for text in [
            "",
            "[]",
            r#"{"type":1}"#,
            r#"{"type":"A""#,
            r#"{"ty\"pe":"A"}"#,
            r#"{"type":"A"} x"#,
            r#"{"type":"A","items":{"results":[1,2}"#,
            r#"{"request-id":1}"#,
        ] {
            assert_eq!(shape(text), None, "{text}");
        }
    }

    #[test]
    fn counts_as_serde_json_does() {
        for n in [1usize, 2, 50, 500] {
            let results: Vec<serde_json::Value> = (0..n)
                .map(|i| serde_json::json!({"id": i.to_string(), "fields": {"text": format!("a, [b] {{c}} \"{i}\""), "tags": ["x", "y"]}}))
                .collect();
            let text = serde_json::json!({"type": "ITEMS_RECEIVE", "items": {"server": "s", "results": results}, "request-id": 1}).to_string();
            assert_eq!(shape(&text).and_then(|s| s.results), Some(n as u64));
        }
    }
}
