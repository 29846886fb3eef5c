//! Where a webhook may go: the address classifier, the target policy
//! (`webhooks.allow_http`, `webhooks.allowed_private_targets`) and the DNS
//! resolver that applies it at connect time.
//!
//! A `notify_url` is checked twice. When the order is created
//! ([`TargetPolicy::check`], from `api::orders`), on the host as the
//! WHATWG URL parser normalises it (`2130706433`, `0x7f.1`, `0177.0.0.1`
//! and `127.1` are all `127.0.0.1`; `[::ffff:7f00:1]` is an IPv6 address),
//! so every spelling of a literal address is one value to classify. A name
//! is not resolved then: what it resolves to later is what counts. When the
//! event is sent ([`super::worker`]), the same check runs again, and a name
//! is resolved by [`GuardedResolver`], which refuses the name when any of
//! its addresses is special and otherwise hands exactly the checked
//! addresses to the connector. reqwest connects to what its resolver
//! returns, so there is no second lookup between check and connect (no
//! DNS-rebinding window). Literal addresses never reach a resolver, which
//! is why they are checked on the parsed URL before the request is built.
//! Redirects are never followed, and no proxy is used (a proxy would
//! resolve and connect on voicepay's behalf, unchecked).
//!
//! Ranges: IANA's IPv4 and IPv6 special-purpose address registries (RFC
//! 6890 and its updates), plus multicast, class E and the IPv4-in-IPv6
//! forms (RFC 4291 mapped/compatible, RFC 6052 NAT64, RFC 3056 6to4).

use crate::config::{normal_host, WebhookSettings};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// IPv4 ranges webhooks never reach: (network, prefix length, name).
const V4_SPECIAL: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "this-network (0.0.0.0/8)"),
    (0x0a00_0000, 8, "private (10.0.0.0/8)"),
    (0x6440_0000, 10, "carrier-grade NAT (100.64.0.0/10)"),
    (0x7f00_0000, 8, "loopback (127.0.0.0/8)"),
    (0xa9fe_0000, 16, "link-local (169.254.0.0/16)"),
    (0xac10_0000, 12, "private (172.16.0.0/12)"),
    (0xc000_0000, 24, "IETF protocol assignments (192.0.0.0/24)"),
    (0xc000_0200, 24, "documentation (192.0.2.0/24)"),
    (0xc058_6300, 24, "6to4 relay anycast (192.88.99.0/24)"),
    (0xc0a8_0000, 16, "private (192.168.0.0/16)"),
    (0xc612_0000, 15, "benchmarking (198.18.0.0/15)"),
    (0xc633_6400, 24, "documentation (198.51.100.0/24)"),
    (0xcb00_7100, 24, "documentation (203.0.113.0/24)"),
    (0xe000_0000, 4, "multicast (224.0.0.0/4)"),
    (0xf000_0000, 4, "reserved or broadcast (240.0.0.0/4)"),
];

/// IPv6 ranges webhooks never reach, checked in order after the forms
/// that embed an IPv4 address.
const V6_SPECIAL: &[(u128, u8, &str)] = &[
    (0, 128, "unspecified (::)"),
    (1, 128, "loopback (::1)"),
    (0xffff_0000_0000, 96, "IPv4-mapped (::ffff:0:0/96)"),
    (0, 96, "IPv4-compatible (::/96)"),
    (
        0x0064_ff9b_0001 << 80,
        48,
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    (0x0100 << 112, 64, "discard-only (100::/64)"),
    (0x2001_0db8 << 96, 32, "documentation (2001:db8::/32)"),
    (0x2001 << 112, 23, "IETF protocol assignments (2001::/23)"),
    (0x3fff << 112, 20, "documentation (3fff::/20)"),
    (0x5f00 << 112, 16, "SRv6 SIDs (5f00::/16)"),
    (0xfc00 << 112, 7, "unique local (fc00::/7)"),
    (0xfe80 << 112, 10, "link-local (fe80::/10)"),
    (0xfec0 << 112, 10, "site-local (fec0::/10)"),
    (0xff00 << 112, 8, "multicast (ff00::/8)"),
];

/// The special range `ip` is in, named for the operator's log; `None` for
/// a public address, the only kind webhooks may reach unless listed in
/// `webhooks.allowed_private_targets`.
///
/// IPv6 outside global unicast (2000::/3) is special, except the NAT64
/// well-known prefix 64:ff9b::/96, whose embedded IPv4 address is
/// classified instead (an IPv6-only network with DNS64 reaches every IPv4
/// site that way); 6to4 (2002::/16) likewise takes the class of the IPv4
/// address it embeds.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_SPECIAL
        .iter()
        .find(|(net, len, _)| bits >> (32 - u32::from(*len)) == net >> (32 - u32::from(*len)))
        .map(|(_, _, name)| *name)
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let within =
        |net: u128, len: u8| bits >> (128 - u32::from(len)) == net >> (128 - u32::from(len));
    if within(0x0064_ff9b << 96, 96) {
        // NAT64 well-known prefix: the last 32 bits are the IPv4 address.
        return special_v4(Ipv4Addr::from(bits as u32)).map(|_| "NAT64 of a special IPv4 address");
    }
    if within(0x2002 << 112, 16) {
        // 6to4: bits 16..48 are the IPv4 address.
        return special_v4(Ipv4Addr::from((bits >> 80) as u32))
            .map(|_| "6to4 of a special IPv4 address");
    }
    if let Some((_, _, name)) = V6_SPECIAL.iter().find(|(net, len, _)| within(*net, *len)) {
        return Some(name);
    }
    (!within(0x2000 << 112, 3)).then_some("not global unicast (outside 2000::/3)")
}

/// Why a `notify_url` is refused. The text is fit for a merchant: it names
/// the rule, never the address or the URL back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Plain http while `webhooks.allow_http` is off.
    #[error("notify_url must be an https URL")]
    PlainHttp,
    /// The host is a special address (loopback, private, link-local…), in
    /// whatever spelling, or a name that is loopback by definition
    /// (`localhost`, `*.localhost`, RFC 6761).
    #[error("notify_url must point at a public internet address, not a loopback, private, link-local or otherwise reserved one")]
    Address {
        /// The range, for the operator's log.
        range: &'static str,
    },
    /// Not an absolute http(s) URL with a host (only a stored URL can be:
    /// new ones are checked by [`crate::domain::NotifyUrl`]).
    #[error("notify_url is not an absolute http or https URL")]
    NotAUrl,
}

/// What [`TargetPolicy::check`] found the target to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Its `host:port` is in `webhooks.allowed_private_targets`: connect
    /// without the address check.
    Listed,
    /// A literal public address.
    Public(IpAddr),
    /// A name: its addresses are checked when it is resolved
    /// ([`GuardedResolver`]).
    Name(String),
}

/// The target rules of `[webhooks]`: the scheme, the address ranges and
/// the operator's exceptions.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    allow_http: bool,
    listed: Vec<(String, u16)>,
}

impl TargetPolicy {
    /// The policy of `settings` (whose entries were checked at start-up;
    /// an entry that is not `host:port` lets nothing through).
    pub fn new(settings: &WebhookSettings) -> Self {
        Self {
            allow_http: settings.allow_http,
            listed: settings.allowed_targets().unwrap_or_default(),
        }
    }

    /// Checks `url` as far as it can be without DNS: the scheme, a listed
    /// `host:port`, a literal address's range, a loopback name.
    ///
    /// # Errors
    /// [`Refused`] when webhooks may not go there.
    pub fn check(&self, url: &url::Url) -> Result<Target, Refused> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(Refused::PlainHttp),
            _ => return Err(Refused::NotAUrl),
        }
        let host = url.host().ok_or(Refused::NotAUrl)?;
        let port = url.port_or_known_default().ok_or(Refused::NotAUrl)?;
        let normal = normal_host(host.clone());
        if self.listed.iter().any(|(h, p)| *h == normal && *p == port) {
            return Ok(Target::Listed);
        }
        let ip = match host {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(_) if normal == "localhost" || normal.ends_with(".localhost") => {
                return Err(Refused::Address {
                    range: "loopback name (localhost)",
                })
            }
            url::Host::Domain(_) => return Ok(Target::Name(normal)),
        };
        match special_range(ip) {
            Some(range) => Err(Refused::Address { range }),
            None => Ok(Target::Public(ip)),
        }
    }
}

/// A name resolved to a special address: nothing is connected to.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {ip}, a {range} address")]
pub struct BlockedAddress {
    /// The name as looked up.
    pub host: String,
    /// The first special address among its answers.
    pub ip: IpAddr,
    /// Its range.
    pub range: &'static str,
}

/// The resolver of the webhook client: asks `lookup` (the system resolver
/// unless a test hands another), refuses the name when any answer is a
/// special address ([`BlockedAddress`]), and returns the checked answers,
/// which are what the connector then connects to.
pub struct GuardedResolver {
    lookup: Arc<dyn Resolve>,
}

impl GuardedResolver {
    /// Checks the answers of `lookup`.
    pub fn new(lookup: Arc<dyn Resolve>) -> Self {
        Self { lookup }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let answers = self.lookup.resolve(name);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = answers.await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            if let Some((ip, range)) = addrs
                .iter()
                .find_map(|a| special_range(a.ip()).map(|r| (a.ip(), r)))
            {
                return Err(Box::new(BlockedAddress { host, ip, range }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
pub struct SystemLookup;

impl Resolve for SystemLookup {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(Box::new(addrs.collect::<Vec<_>>().into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<&'static str> {
        special_range(s.parse().unwrap())
    }

    #[test]
    fn special_ipv4_ranges_are_refused_at_both_edges() {
        for ip in [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(class(ip).is_some(), "{ip} must be special");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(class(ip), None, "{ip} is public");
        }
        assert_eq!(
            class("169.254.169.254"),
            Some("link-local (169.254.0.0/16)")
        );
        assert_eq!(
            class("100.64.0.1"),
            Some("carrier-grade NAT (100.64.0.0/10)")
        );
    }

    #[test]
    fn special_ipv6_ranges_and_embedded_ipv4_are_refused() {
        for ip in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8", // mapped: never, whatever it maps
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "4000::1",
            "8000::1",
            "e000::1",
        ] {
            assert!(class(ip).is_some(), "{ip} must be special");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "64:ff9b::808:808", // NAT64 of 8.8.8.8
            "2002:808:808::1",  // 6to4 of 8.8.8.8
            "2001:200::1",      // just past 2001::/23
        ] {
            assert_eq!(class(ip), None, "{ip} is public");
        }
        assert_eq!(class("::ffff:7f00:1"), Some("IPv4-mapped (::ffff:0:0/96)"));
    }

    fn policy(allow_http: bool, listed: &[&str]) -> TargetPolicy {
        let mut s = WebhookSettings {
            allow_http,
            ..WebhookSettings::default()
        };
        s.allowed_private_targets = listed.iter().map(|e| (*e).to_owned()).collect();
        TargetPolicy::new(&s)
    }

    fn check(p: &TargetPolicy, u: &str) -> Result<Target, Refused> {
        p.check(&url::Url::parse(u).unwrap())
    }

    #[test]
    fn every_spelling_of_an_internal_address_is_refused() {
        let p = policy(true, &[]);
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://evil@127.0.0.1/",
            "http://0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8088/ari/asterisk/info",
            "http://10.1.2.3/",
            "http://[fd00::1]/",
            "http://100.64.1.1/",
        ] {
            assert!(
                matches!(check(&p, u), Err(Refused::Address { .. })),
                "{u} must be refused: {:?}",
                check(&p, u)
            );
        }
    }

    #[test]
    fn names_wait_for_resolution_and_public_addresses_pass() {
        let p = policy(false, &[]);
        assert_eq!(
            check(&p, "https://Hooks.Shop.example./w"),
            Ok(Target::Name("hooks.shop.example".into()))
        );
        assert_eq!(
            check(&p, "https://8.8.8.8/w"),
            Ok(Target::Public("8.8.8.8".parse().unwrap()))
        );
    }

    #[test]
    fn plain_http_needs_allow_http() {
        assert_eq!(
            check(&policy(false, &[]), "http://hooks.shop.example/w"),
            Err(Refused::PlainHttp)
        );
        assert!(check(&policy(true, &[]), "http://hooks.shop.example/w").is_ok());
        assert_eq!(
            check(
                &policy(false, &["127.0.0.1:9000"]),
                "http://127.0.0.1:9000/w"
            ),
            Err(Refused::PlainHttp),
            "a listed target still needs allow_http for plain http"
        );
    }

    #[test]
    fn the_allow_list_names_host_and_port() {
        let p = policy(
            true,
            &["127.0.0.1:9000", "[::1]:9001", "Hooks.Internal:443"],
        );
        assert_eq!(check(&p, "http://127.0.0.1:9000/h"), Ok(Target::Listed));
        // The same address in another spelling is the same target.
        assert_eq!(check(&p, "http://0x7f.1:9000/h"), Ok(Target::Listed));
        assert_eq!(check(&p, "http://[::1]:9001/h"), Ok(Target::Listed));
        assert_eq!(check(&p, "https://hooks.internal/h"), Ok(Target::Listed));
        // Another port of a listed host is not listed.
        assert!(check(&p, "http://127.0.0.1:8088/ari/asterisk/info").is_err());
        assert!(check(&p, "http://[::1]:9000/h").is_err());
        assert_eq!(
            check(&p, "http://hooks.internal/h"),
            Ok(Target::Name("hooks.internal".into()))
        );
    }

    struct Answers(Vec<IpAddr>);

    impl Resolve for Answers {
        fn resolve(&self, _: Name) -> Resolving {
            let addrs: Vec<SocketAddr> = self.0.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    async fn resolve(answers: &[&str]) -> Result<Vec<SocketAddr>, String> {
        let lookup = Answers(answers.iter().map(|a| a.parse().unwrap()).collect());
        let r = GuardedResolver::new(Arc::new(lookup));
        match r.resolve("hooks.shop.example".parse().unwrap()).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => {
                assert!(e.downcast_ref::<BlockedAddress>().is_some() || answers.is_empty());
                Err(e.to_string())
            }
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_any_special_answer() {
        assert_eq!(
            resolve(&["93.184.215.14"]).await.unwrap(),
            vec!["93.184.215.14:0".parse().unwrap()]
        );
        let err = resolve(&["93.184.215.14", "127.0.0.1"]).await.unwrap_err();
        assert!(
            err.contains("127.0.0.1") && err.contains("loopback"),
            "{err}"
        );
        assert!(resolve(&["::ffff:10.0.0.1"]).await.is_err());
        assert!(resolve(&[]).await.is_err());
    }
}
