//! Outbound requests to addresses chosen by strangers (handles, did:web
//! documents, service endpoints, OAuth client metadata) reach public
//! addresses only: a name that resolves to loopback, a private range or
//! link-local (cloud metadata endpoints) is refused before connecting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::BoxError;

/// Whether `ip` is a public unicast address: not loopback, private,
/// link-local, shared, documentation, multicast, broadcast, unspecified or
/// reserved.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(ip),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        // 100.64.0.0/10, shared address space
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, protocol assignments
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // 198.18.0.0/15, benchmarking
        || (a == 198 && (b == 18 || b == 19)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // 2001:db8::/32, documentation
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // 64:ff9b:1::/48, local-use translation; ::/96 (deprecated v4-compatible)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1)
        || ip.segments()[..6].iter().all(|s| *s == 0))
}

/// Resolves names with the system resolver and keeps only public
/// addresses, so that a handle, a DID document or a client metadata URL
/// cannot point the PDS at its own network through a name.
#[derive(Debug)]
pub(crate) struct PublicAddressesOnly;

impl reqwest::dns::Resolve for PublicAddressesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(BoxError::from(format!("{host} has no public address")));
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;

    use super::*;
    use crate::identity::{build_client, build_outbound_client, error_chain, redirect_policy};

    #[test]
    fn public_and_private_addresses() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    /// A loopback server: `/` answers, `/go` redirects to `/` by its
    /// literal address.
    async fn loopback_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new()
            .route("/", get(|| async { "internal" }))
            .route(
                "/go",
                get(move || async move {
                    axum::response::Redirect::temporary(&format!("http://127.0.0.1:{port}/"))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        port
    }

    #[tokio::test]
    async fn names_of_private_addresses_are_not_connected_to() {
        let port = loopback_server().await;
        let url = format!("http://localhost:{port}/");
        let timeout = Duration::from_secs(5);
        let strict = build_outbound_client(timeout, redirect_policy(3, false), false).unwrap();
        let err = strict.get(&url).send().await.unwrap_err();
        assert!(error_chain(&err).contains("no public address"), "{err}");
        // The development setting lets it through.
        let lax = build_outbound_client(timeout, redirect_policy(3, true), true).unwrap();
        assert_eq!(
            lax.get(&url).send().await.unwrap().text().await.unwrap(),
            "internal"
        );
    }

    #[tokio::test]
    async fn redirects_to_private_literals_are_refused() {
        let port = loopback_server().await;
        let url = format!("http://127.0.0.1:{port}/go");
        let timeout = Duration::from_secs(5);
        let strict = build_client(timeout, redirect_policy(3, false)).unwrap();
        let err = strict.get(&url).send().await.unwrap_err();
        assert!(error_chain(&err).contains("not public"), "{err}");
        let lax = build_client(timeout, redirect_policy(3, true)).unwrap();
        assert_eq!(
            lax.get(&url).send().await.unwrap().text().await.unwrap(),
            "internal"
        );
    }
}
