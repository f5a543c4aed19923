//! `check_origin` (spec §2.3, §12.5).

/// The configured policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOrigin {
    /// `false`: every origin is allowed.
    Off,
    /// `true`: the Origin's host must equal the endpoint URL host (scheme and port are not
    /// compared). With no URL host configured every origin is allowed.
    UrlHost(Option<String>),
    /// A list like `["https://example.com", "//another.com:888", "//*.other.com"]`.
    List(Vec<OriginEntry>),
    /// `:conn`: host, scheme and port must equal the request's own.
    Conn,
}

/// One entry of an origin list; absent components match anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginEntry {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
}

impl OriginEntry {
    pub fn parse(s: &str) -> Result<OriginEntry, String> {
        let u = parse_uri(s).ok_or_else(|| format!("invalid origin entry {s:?}"))?;
        // An entry with a scheme implicitly pins that scheme's default port (gotcha 4).
        let port = u.port.or_else(|| u.scheme.as_deref().and_then(default_port));
        Ok(OriginEntry { scheme: u.scheme, host: u.host, port })
    }
}

struct Uri {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Parses `scheme://host:port/...` or `//host:port`.
fn parse_uri(s: &str) -> Option<Uri> {
    let (scheme, rest) = match s.find("//") {
        Some(0) => (None, &s[2..]),
        Some(i) if s[..i].ends_with(':') => (Some(s[..i - 1].to_ascii_lowercase()), &s[i + 2..]),
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority.ends_with(']') => (&authority[..i], Some(authority[i + 1..].parse().ok()?)),
        _ => (authority, None),
    };
    let host = if host.is_empty() { None } else { Some(host.to_ascii_lowercase()) };
    Some(Uri { scheme, host, port })
}

/// The request facts `:conn` mode compares against.
pub struct RequestSide<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
}

impl CheckOrigin {
    /// Is a request with this `Origin` header allowed? No header → always allowed.
    pub fn allows(&self, origin: Option<&str>, request: &RequestSide<'_>) -> bool {
        let Some(origin) = origin else { return true };
        match self {
            CheckOrigin::Off => true,
            CheckOrigin::UrlHost(None) => true,
            CheckOrigin::UrlHost(Some(host)) => {
                parse_uri(origin).and_then(|u| u.host).is_some_and(|h| h.eq_ignore_ascii_case(host))
            }
            CheckOrigin::List(entries) => {
                let Some(u) = parse_uri(origin) else { return false };
                let Some(host) = &u.host else { return false };
                let port = u.port.or_else(|| u.scheme.as_deref().and_then(default_port));
                entries.iter().any(|e| {
                    e.scheme.as_ref().is_none_or(|s| Some(s) == u.scheme.as_ref())
                        && e.port.is_none_or(|p| Some(p) == port)
                        && e.host.as_ref().is_none_or(|h| host_matches(h, host))
                })
            }
            CheckOrigin::Conn => {
                let Some(u) = parse_uri(origin) else { return false };
                let port = u.port.or_else(|| u.scheme.as_deref().and_then(default_port));
                u.host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(request.host))
                    && u.scheme.as_deref() == Some(request.scheme)
                    && port == Some(request.port)
            }
        }
    }
}

fn host_matches(entry: &str, host: &str) -> bool {
    match entry.strip_prefix("*.") {
        Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
        None => entry == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: RequestSide<'static> = RequestSide { scheme: "http", host: "localhost", port: 4000 };

    #[test]
    fn url_host_mode_compares_host_only() {
        // spec §12.5 / checklist 110.
        let c = CheckOrigin::UrlHost(Some("localhost".into()));
        for ok in ["http://localhost", "https://localhost", "http://localhost:4103"] {
            assert!(c.allows(Some(ok), &REQ), "{ok}");
        }
        for bad in ["http://127.0.0.1:4103", "http://sub.localhost", "http://evil.example", "null"] {
            assert!(!c.allows(Some(bad), &REQ), "{bad}");
        }
        assert!(c.allows(None, &REQ));
        assert!(CheckOrigin::UrlHost(None).allows(Some("http://x"), &REQ));
        assert!(CheckOrigin::Off.allows(Some("null"), &REQ));
    }

    #[test]
    fn list_mode() {
        // checklist 8 and 9.
        let c = CheckOrigin::List(vec![OriginEntry::parse("https://example.com").unwrap()]);
        assert!(c.allows(Some("https://example.com"), &REQ));
        assert!(!c.allows(Some("https://example.com:8443"), &REQ));
        assert!(!c.allows(Some("http://example.com"), &REQ));
        let c = CheckOrigin::List(vec![OriginEntry::parse("//*.example.com").unwrap()]);
        assert!(c.allows(Some("https://example.com"), &REQ));
        assert!(c.allows(Some("http://a.b.example.com:81"), &REQ));
        assert!(!c.allows(Some("http://badexample.com"), &REQ));
        let c = CheckOrigin::List(vec![OriginEntry::parse("//another.com:888").unwrap()]);
        assert!(c.allows(Some("http://another.com:888"), &REQ));
        assert!(!c.allows(Some("http://another.com"), &REQ));
    }

    #[test]
    fn conn_mode() {
        assert!(CheckOrigin::Conn.allows(Some("http://localhost:4000"), &REQ));
        assert!(!CheckOrigin::Conn.allows(Some("https://localhost:4000"), &REQ));
        assert!(!CheckOrigin::Conn.allows(Some("http://localhost:4001"), &REQ));
    }
}
