//! `llhls::BlockingQuery::parse` on any string: never panics, refuses what
//! is over the limits, never accepts `_HLS_part` without `_HLS_msn`, and
//! what it accepts reads back the same when written out as a query. A
//! leading `*` repeats the rest 64 times, to get past the length limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::llhls::{BlockingQuery, QueryError, MAX_QUERY_LEN, MAX_QUERY_PARAMS};

fuzz_target!(|data: &[u8]| {
    let query = match data.split_first() {
        Some((b'*', rest)) => String::from_utf8_lossy(rest).repeat(64),
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    let parsed = BlockingQuery::parse(&query);
    // The reply text is made from every error.
    if let Err(e) = &parsed {
        let _ = e.to_string();
    }
    if query.len() > MAX_QUERY_LEN {
        assert_eq!(parsed, Err(QueryError::TooLong(query.len())));
        return;
    }
    let params = query.split('&').filter(|p| !p.is_empty()).count();
    if params > MAX_QUERY_PARAMS {
        assert!(parsed.is_err());
    }
    let Ok(q) = parsed else {
        return;
    };
    assert!(q.part.is_none() || q.msn.is_some(), "{query:?} -> {q:?}");
    let mut again = Vec::new();
    if let Some(msn) = q.msn {
        again.push(format!("_HLS_msn={msn}"));
    }
    if let Some(part) = q.part {
        again.push(format!("_HLS_part={part}"));
    }
    if q.skip {
        again.push("_HLS_skip=YES".to_string());
    }
    assert_eq!(BlockingQuery::parse(&again.join("&")), Ok(q), "{query:?}");
});
