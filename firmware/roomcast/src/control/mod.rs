//! Everything that controls and watches the running pipeline: the shared
//! state the API acts on ([`app`]), the HTTP server and its routes
//! ([`http`]), access control ([`auth`]), the web page ([`web`]), and the
//! box's links to its surroundings: mDNS ([`mdns`]), systemd
//! ([`sdnotify`]), the tally LED and reset button ([`gpio`]), the health
//! figures ([`system`]) and the HTTPS certificate ([`tls`]).

pub mod app;
pub mod auth;
pub mod gpio;
pub mod http;
pub mod mdns;
pub mod sdnotify;
pub mod system;
pub mod tls;
pub mod web;
