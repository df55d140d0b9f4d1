//! Per-client request limits and the dev-mode `Host` check.
//!
//! **Rate limits.** The routes that make work (presign, confirm, multipart) allow each client
//! address `FERRY_RATE_LIMIT` requests a second with bursts of `FERRY_RATE_LIMIT_BURST`
//! (`governor`'s GCRA, keyed by address; IPv6 clients by their /64, which is what one client
//! usually holds). Past it: `429 rate-limited` with `Retry-After`. The table of clients is
//! pruned as it grows, so a flood of addresses cannot grow memory without bound. Behind a load
//! balancer or proxy every request comes from the proxy: with its addresses in
//! `FERRY_TRUSTED_PROXIES`, the client is the rightmost address in `X-Forwarded-For` that is
//! not a trusted proxy (each proxy appends the address it saw; whatever a client wrote itself
//! stands further left and is never believed). Without the setting the header is ignored.
//!
//! **Dev mode and DNS rebinding.** In dev mode the caller is whoever the `X-User-Id` header
//! says, so a web page must never reach a loopback Ferry by a name it controls (DNS rebinding:
//! `evil.example` resolving to 127.0.0.1). Dev mode therefore answers only requests whose `Host`
//! is a loopback name or address, or the host of a configured origin.

use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{ApiError, AppState};

/// Client addresses remembered before the table is pruned of those at full allowance.
const PRUNE_AT: usize = 100_000;

pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl RateLimit {
    /// `None` when `per_second` is 0 (limits off).
    pub fn new(per_second: u32, burst: u32, trusted_proxies: Vec<ipnet::IpNet>) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(Self { limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)), trusted_proxies })
    }

    /// Who sent `req`: its connection's peer, or, when the peer is a trusted proxy, the
    /// rightmost `X-Forwarded-For` address that is not a trusted proxy. An entry that is not an
    /// address ends the walk at the last proxy that could be believed.
    fn client(&self, req: &Request) -> Option<IpAddr> {
        let mut client = peer_ip(req)?;
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(&client) {
            return Some(client);
        }
        // Right to left: the last header line first, and each line's list from its end.
        let forwarded = req.headers().get_all("x-forwarded-for").iter().rev().filter_map(|v| v.to_str().ok());
        for entry in forwarded.flat_map(|v| v.rsplit(',')).map(str::trim) {
            let Ok(ip) = entry.parse::<IpAddr>() else { break };
            client = ip;
            if !trusted(&client) {
                break;
            }
        }
        Some(client)
    }

    /// `Err(seconds to wait)` when `client` is over its limit.
    fn check(&self, client: IpAddr) -> Result<(), u64> {
        if self.limiter.len() > PRUNE_AT {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&client_key(client))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1))
    }
}

/// One key per client: an IPv4 address, or the /64 an IPv6 address belongs to.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Middleware for the routes that make work.
pub async fn rate_limited(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(limit) = &state.rate_limit
        && let Some(client) = limit.client(&req)
        && let Err(retry_after) = limit.check(client)
    {
        return ApiError::RateLimited { retry_after }.into_response();
    }
    next.run(req).await
}

fn peer_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The host names dev mode answers: loopback, and the hosts of the configured origins.
pub fn dev_hosts(origins: &[String]) -> Vec<String> {
    origins.iter().filter_map(|o| url::Url::parse(o).ok()?.host_str().map(str::to_ascii_lowercase)).collect()
}

/// Whether a `Host` header value names this machine's loopback or an allowed host.
fn host_allowed(host_header: &str, allowed: &[String]) -> bool {
    // `name`, `name:port`, `[v6]`, `[v6]:port`.
    let host = match host_header.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(h, _)| h),
        None => host_header
            .rsplit_once(':')
            .map_or(host_header, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host_header }),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || allowed.contains(&host)
}

/// Middleware (dev mode): refuse requests addressed to a name that is not loopback.
pub async fn dev_host_check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(allowed) = &state.dev_hosts {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        if !host_allowed(host, allowed) {
            tracing::info!("dev mode: request for a host that is not loopback refused");
            return ApiError::HostNotAllowed.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_configured_hosts_are_allowed_and_others_are_not() {
        let allowed = dev_hosts(&["https://app.example:8443".to_owned()]);
        for ok in
            ["localhost", "localhost:3000", "127.0.0.1:3000", "127.1.2.3", "[::1]:3000", "a.localhost", "app.example"]
        {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in ["evil.example", "evil.example:3000", "", "localhost.evil.example", "10.0.0.1:3000", "[::2]"] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    fn client_seen(trusted: &[&str], peer: &str, forwarded: &[&str]) -> IpAddr {
        let trusted = trusted.iter().map(|t| t.parse().unwrap()).collect();
        let limit = RateLimit::new(1, 1, trusted).unwrap();
        let mut req = Request::new(axum::body::Body::empty());
        let peer: std::net::SocketAddr = format!("{peer}:4000").parse().unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        for value in forwarded {
            req.headers_mut().append("x-forwarded-for", value.parse().unwrap());
        }
        limit.client(&req).unwrap()
    }

    #[test]
    fn x_forwarded_for_is_believed_only_from_trusted_proxies_and_only_as_far_as_they_go() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // No trusted proxies: the header is ignored.
        assert_eq!(client_seen(&[], "127.0.0.1", &["203.0.113.7"]), ip("127.0.0.1"));
        // From a trusted proxy: the address it appended.
        assert_eq!(client_seen(&["127.0.0.1/32"], "127.0.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        // A client's own entry stands left of the proxy's and is not believed.
        assert_eq!(client_seen(&["127.0.0.1/32"], "127.0.0.1", &["198.51.100.9, 203.0.113.7"]), ip("203.0.113.7"));
        // Through two trusted proxies (one header line each, or one list): the first untrusted hop.
        assert_eq!(
            client_seen(&["127.0.0.1/32", "10.0.0.0/8"], "127.0.0.1", &["198.51.100.9, 203.0.113.7", "10.1.2.3"]),
            ip("203.0.113.7")
        );
        // A peer that is not trusted is the client, whatever the header says.
        assert_eq!(client_seen(&["10.0.0.0/8"], "127.0.0.1", &["203.0.113.7"]), ip("127.0.0.1"));
        // Garbage ends the walk at the last believable hop; no header at all: the proxy itself.
        assert_eq!(client_seen(&["127.0.0.1/32"], "127.0.0.1", &["not-an-ip"]), ip("127.0.0.1"));
        assert_eq!(client_seen(&["127.0.0.1/32"], "127.0.0.1", &[]), ip("127.0.0.1"));
    }

    #[test]
    fn ipv6_clients_share_a_limit_per_64_and_the_limit_refuses_past_the_burst() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let limit = RateLimit::new(1, 2, Vec::new()).unwrap();
        assert!(limit.check(a).is_ok() && limit.check(b).is_ok());
        assert!(limit.check(a).unwrap_err() >= 1);
        assert!(limit.check("192.0.2.1".parse().unwrap()).is_ok(), "another client has its own allowance");
        assert!(RateLimit::new(0, 10, Vec::new()).is_none());
    }
}
