//! Credentials out of addresses, for logs, messages and stored names.

/// `url` with the password (or a lone user token) of its authority and
/// the values of its query replaced by `***`, for logs, messages and the
/// stored consumer name. Needs no HTTP client: a refusal of an HTTP target
/// in a build without one is redacted too.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // A password holding an unencoded '/', '?' or '#' ends the authority
    // early (`u:se/cret@h`): what stands for a port is not a number, and
    // an '@' comes later. Everything up to the last '@' is hidden (such
    // an address is not a valid URL: no consumer is named after it).
    if !authority.contains('@')
        && authority.rsplit_once(':').is_some_and(|(_, port)| !port.bytes().all(|b| b.is_ascii_digit()))
        && let Some(at) = rest.rfind('@')
    {
        return redacted(&format!("{scheme}://***@{}", &rest[at + 1..]));
    }
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) => format!("{key}=***"),
                    None => pair.to_string(),
                })
                .collect();
            format!("{path}?{}{}", query.join("&"), fragment.map_or(String::new(), |f| format!("#{f}")))
        }
        None => tail.to_string(),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".into(),
            };
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redacted("https://u:secret@h:8/p?q=1"), "https://u:***@h:8/p?q=***");
        assert_eq!(redacted("https://token@h/p"), "https://***@h/p");
        assert_eq!(redacted("http://h/p@x"), "http://h/p@x");
        assert_eq!(redacted("http://h"), "http://h");
        assert_eq!(redacted("https://h/hook?token=abc&x=1#f"), "https://h/hook?token=***&x=***#f");
        // A password with '/', '?' or '#' left unencoded never shows.
        for leaky in ["https://u:se/cret@h/p?t=1", "nats://u:pa?ss@h:4222/S", "http://u:pa#ss@h/p"] {
            let shown = redacted(leaky);
            assert!(!shown.contains("cret") && !shown.contains("pa"), "{leaky} -> {shown}");
            assert!(shown.contains("***@h"), "{leaky} -> {shown}");
        }
        assert_eq!(redacted("https://u:se/cret@h/p?t=1"), "https://***@h/p?t=***");
        // A port and an '@' further on stay as they were.
        assert_eq!(redacted("https://h:8080/p?e=a@b"), "https://h:8080/p?e=***");
    }
}
