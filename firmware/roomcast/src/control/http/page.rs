//! The web page's files (built into the binary), open to everyone: the
//! page asks for the password itself.

use super::{Reply, Req};
use crate::control::web;

pub(super) fn route(req: &Req) -> Reply {
    let p = req.path();
    if !req.method.is_read() {
        return Reply::not_allowed(&req.method, p);
    }
    match web::asset(p) {
        Some(a) => Reply::new(200, a.content_type, a.body).header("Cache-Control", "no-cache"),
        None => Reply::error(404, &format!("no such page: {p}")),
    }
}
