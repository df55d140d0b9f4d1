//! Virtual-hosted-style addressing (`Host: ferry.localhost:9000`, key in the path), which SDKs
//! use by default for names that allow it.
//!
//! `s3s`'s own `SingleDomain` compares the `Host` header with its port and takes any other
//! name as a bucket (CNAME style), so `Host: localhost:9000` would name a bucket `localhost`.
//! Here only a subdomain of one of the store's own host names names a bucket; every other
//! host, including IP addresses and the names themselves, means path style.

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

pub(super) struct StoreHost {
    /// Lower-case host names, without ports.
    domains: Vec<String>,
}

impl StoreHost {
    /// `domains`: the store's host names; `localhost` is always one.
    pub fn new(domains: &[String]) -> Self {
        let mut domains: Vec<String> = domains.iter().map(|d| d.trim_end_matches('.').to_ascii_lowercase()).collect();
        domains.push("localhost".into());
        domains.retain(|d| !d.is_empty() && d.parse::<std::net::IpAddr>().is_err());
        domains.sort();
        domains.dedup();
        Self { domains }
    }
}

/// `name` without a `:port` (IPv6 literals keep their brackets).
fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

impl S3Host for StoreHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = without_port(host);
        for domain in &self.domains {
            let Some(split) = name.len().checked_sub(domain.len() + 1) else { continue };
            let (bucket, rest) = name.split_at(split);
            if rest.len() == domain.len() + 1 && rest[1..].eq_ignore_ascii_case(domain) && rest.starts_with('.') {
                return Ok(VirtualHost::new(domain.as_str()).with_bucket(bucket));
            }
        }
        Ok(VirtualHost::new(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(hosts: &StoreHost, header: &str) -> Option<String> {
        hosts.parse_host_header(header).unwrap().bucket().map(str::to_owned)
    }

    #[test]
    fn only_a_subdomain_of_the_stores_names_is_a_bucket() {
        let hosts = StoreHost::new(&["files.example.com".into(), "127.0.0.1".into()]);
        assert_eq!(bucket(&hosts, "ferry.localhost:9000").as_deref(), Some("ferry"));
        assert_eq!(bucket(&hosts, "ferry.files.example.com").as_deref(), Some("ferry"));
        assert_eq!(bucket(&hosts, "Ferry.FILES.example.com:443").as_deref(), Some("Ferry"));
        for path_style in ["localhost:9000", "localhost", "files.example.com", "other.example", "127.0.0.1:9000"] {
            assert_eq!(bucket(&hosts, path_style), None, "{path_style}");
        }
        assert_eq!(bucket(&hosts, "evil-localhost"), None, "a suffix without its dot is another name");
    }
}
