//! `kafka://HOST:PORT[,HOST:PORT…]/PREFIX[?options]` addresses.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::redact::redacted;

/// A parsed `kafka://` address: the bootstrap servers, the topic prefix and
/// the producer options given as query parameters. Credentials (the URL's
/// `USER:PASSWORD@`) are kept only to configure the client; everything this
/// type shows is [`KafkaUrl::redacted`] or [`KafkaUrl::consumer_name`].
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaUrl {
    /// As given, credentials included.
    url: String,
    /// `host:port,host:port`, for `bootstrap.servers`.
    pub(crate) servers: String,
    /// Topics are `PREFIX.TABLE`; Debezium's schema change records go to
    /// the topic `PREFIX` itself.
    pub prefix: String,
    /// SASL user and password, from the URL's userinfo (percent-decoded).
    pub(crate) credentials: Option<(String, String)>,
    /// Producer settings, as librdkafka names them.
    pub(crate) settings: Vec<(&'static str, String)>,
    /// Free-form librdkafka settings (`?rdkafka.NAME=VALUE`).
    pub(crate) extra: Vec<(String, String)>,
    /// `?transactional_id=`: each source commit is one Kafka transaction.
    pub transactional_id: Option<String>,
    /// Partitions of a topic the target creates (`?partitions=`, 1).
    pub partitions: i32,
    /// Replication factor of a topic the target creates (`?replication=`;
    /// `None`: the broker's default).
    pub replication: Option<i32>,
    /// How long a record may wait for the broker before its delivery
    /// counts as failed and the engine sends again (`?timeout=`).
    pub timeout: Duration,
}

impl std::fmt::Debug for KafkaUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KafkaUrl").field(&self.redacted()).finish()
    }
}

/// How long a record may wait for the broker by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// librdkafka settings the address or its options make, which
/// `rdkafka.NAME` may not change: where records go (the consumer's name
/// and position are those of the address), and what delivery relies on.
const OWN: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "transactional.id",
    "message.timeout.ms",
    "allow.auto.create.topics",
    "security.protocol",
    "sasl.username",
    "sasl.password",
    // Order and placement of one key's records.
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "partitioner",
    "enable.gapless.guarantee",
    "queuing.strategy",
    // Another name of message.timeout.ms (`?timeout=`).
    "delivery.timeout.ms",
];

/// The options a `kafka://` address takes, for messages.
const KNOWN: &str = "acks, compression, client_id, tls, ca, sasl, transactional_id, partitions, replication, \
                     timeout, rdkafka.NAME";

impl std::str::FromStr for KafkaUrl {
    type Err = Error;

    fn from_str(text: &str) -> Result<KafkaUrl> {
        let shown = redacted(text);
        let bad = |why: &str| Error::InvalidSetting(format!("bad Kafka address {shown:?}: {why}"));
        let rest = text.strip_prefix("kafka://").ok_or_else(|| bad("expected kafka://HOST:PORT/PREFIX"))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        // An `@` past the authority: most likely a password holding `/`,
        // `?` or `#`, which the address would show. Not echoed.
        if rest[end..].contains('@') {
            return Err(Error::InvalidSetting(
                "bad Kafka address (not shown: it may hold a password): an '@' after the host; percent-encode \
                 '/', '?', '#' and '@' in USER:PASSWORD (%2F, %3F, %23, %40) and in option values"
                    .into(),
            ));
        }
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hosts) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
        let mut servers = Vec::new();
        let mut first = None;
        for host in hosts.split(',') {
            let url = url::Url::parse(&format!("kafka://{host}{tail}")).map_err(|e| bad(&e.to_string()))?;
            let name = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
            let port = url.port().ok_or_else(|| bad(&format!("no port for {name} (Kafka's is usually 9092)")))?;
            servers.push(format!("{name}:{port}"));
            first.get_or_insert(url);
        }
        let url = first.ok_or_else(|| bad("no host"))?;
        let prefix = url.path().trim_matches('/');
        if prefix.is_empty() {
            return Err(bad("no topic prefix: expected kafka://HOST:PORT/PREFIX"));
        }
        if !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) || prefix.len() > 200 {
            return Err(bad("a topic prefix takes only letters, digits, '.', '_' and '-' (at most 200)"));
        }
        let credentials = match userinfo.split_once(':') {
            _ if userinfo.is_empty() => None,
            Some((user, password)) if !user.is_empty() => Some((decode(user), decode(password))),
            _ => return Err(bad("credentials are USER:PASSWORD@")),
        };
        let mut parsed = KafkaUrl {
            url: text.to_string(),
            servers: servers.join(","),
            prefix: prefix.to_string(),
            credentials,
            settings: Vec::new(),
            extra: Vec::new(),
            transactional_id: None,
            partitions: 1,
            replication: None,
            timeout: DEFAULT_TIMEOUT,
        };
        let (mut acks, mut tls, mut sasl) = ("all".to_string(), false, None);
        for (key, value) in url.query_pairs() {
            let one_of = |allowed: &[&str]| {
                allowed
                    .contains(&value.as_ref())
                    .then(|| value.to_string())
                    .ok_or_else(|| bad(&format!("{key} must be one of {}", allowed.join(", "))))
            };
            let count = |least: i32| {
                value
                    .parse::<i32>()
                    .ok()
                    .filter(|n| *n >= least)
                    .ok_or_else(|| bad(&format!("{key} must be a number ≥ {least}")))
            };
            match key.as_ref() {
                // acks=0 counts a record delivered before any broker has
                // it: the position would pass records that never arrive.
                "acks" => acks = one_of(&["all", "1"])?,
                "compression" => {
                    let codec = one_of(&["none", "gzip", "snappy", "lz4", "zstd"])?;
                    parsed.settings.push(("compression.type", codec));
                }
                "client_id" if !value.is_empty() => parsed.settings.push(("client.id", value.to_string())),
                "tls" => tls = one_of(&["true", "false"])? == "true",
                "ca" if !value.is_empty() => {
                    tls = true;
                    parsed.settings.push(("ssl.ca.location", value.to_string()));
                }
                "sasl" => sasl = Some(one_of(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])?),
                "transactional_id" if !value.is_empty() => parsed.transactional_id = Some(value.to_string()),
                "partitions" => parsed.partitions = count(1)?,
                "replication" => parsed.replication = Some(count(1)?),
                "timeout" => {
                    parsed.timeout = humantime::parse_duration(&value)
                        .ok()
                        .filter(|d| *d >= Duration::from_secs(1))
                        .ok_or_else(|| bad("timeout must be like 30s or 2m (at least 1s)"))?;
                }
                name if name.starts_with("rdkafka.") && name.len() > 8 => {
                    let setting = &name["rdkafka.".len()..];
                    if OWN.contains(&setting) {
                        return Err(bad(&format!("{setting} is set by the address or its options, not rdkafka.")));
                    }
                    parsed.extra.push((setting.to_string(), value.to_string()));
                }
                other => return Err(bad(&format!("unknown or empty option {other:?} (known: {KNOWN})"))),
            }
        }
        if parsed.credentials.is_none() && sasl.is_some() {
            return Err(bad("sasl needs USER:PASSWORD@ in the address"));
        }
        if parsed.transactional_id.is_some() && acks != "all" {
            return Err(bad("transactions need acks=all"));
        }
        let protocol = match (tls, parsed.credentials.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        parsed.settings.push(("security.protocol", protocol.into()));
        if parsed.credentials.is_some() {
            parsed.settings.push(("sasl.mechanism", sasl.unwrap_or_else(|| "PLAIN".into())));
        }
        // The idempotent producer (no duplicates or reordering from its
        // own retries) needs every in-sync replica's acknowledgement;
        // without it, one request in flight keeps a key's records in order.
        parsed.settings.push(("enable.idempotence", (acks == "all").to_string()));
        if acks != "all" {
            parsed.settings.push(("max.in.flight.requests.per.connection", "1".into()));
        }
        // A topic gone is noticed and made again by the target, with its
        // bootstrap; a producer that made it anew would fill it with
        // changes only.
        parsed.settings.push(("allow.auto.create.topics", "false".into()));
        parsed.settings.push(("acks", acks));
        Ok(parsed)
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

impl KafkaUrl {
    /// The address without credentials or option values, for messages and
    /// logs.
    pub fn redacted(&self) -> String {
        redacted(&self.url)
    }

    /// The consumer name this target keeps its position under: servers
    /// and prefix, without credentials or options (changing `acks` or
    /// `compression` does not make it another destination).
    pub fn consumer_name(&self) -> String {
        format!("kafka://{}/{}", self.servers, self.prefix)
    }

    /// The topic of `table`'s records: `PREFIX.TABLE`, every character of
    /// the table's name that a topic name cannot hold replaced by `_` (as
    /// Debezium does).
    pub fn topic(&self, table: &str) -> String {
        let name: String =
            table.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
        format!("{}.{name}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting<'a>(u: &'a KafkaUrl, name: &str) -> Option<&'a str> {
        u.settings.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn addresses_parse_with_options_and_never_show_credentials() {
        let u: KafkaUrl =
            "kafka://me:s%40cret@h1:9092,h2:9093/app.cdc?acks=1&compression=zstd&client_id=x&tls=true&sasl=SCRAM-SHA-512&partitions=3&replication=2&timeout=1m&rdkafka.linger.ms=20"
                .parse()
                .unwrap();
        assert_eq!(u.servers, "h1:9092,h2:9093");
        assert_eq!(u.prefix, "app.cdc");
        assert_eq!(u.credentials, Some(("me".into(), "s@cret".into())));
        assert_eq!(setting(&u, "acks"), Some("1"));
        assert_eq!(setting(&u, "enable.idempotence"), Some("false"));
        assert_eq!(setting(&u, "compression.type"), Some("zstd"));
        assert_eq!(setting(&u, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(setting(&u, "sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!((u.partitions, u.replication, u.timeout), (3, Some(2), Duration::from_secs(60)));
        assert_eq!(u.extra, vec![("linger.ms".to_string(), "20".to_string())]);
        assert_eq!(u.consumer_name(), "kafka://h1:9092,h2:9093/app.cdc");
        for shown in [u.redacted(), format!("{u:?}"), u.consumer_name()] {
            assert!(!shown.contains("cret"), "{shown}");
        }
        assert_eq!(u.topic("order lines"), "app.cdc.order_lines");
        assert_eq!(u.topic("naïve$"), "app.cdc.na_ve_");
        let plain: KafkaUrl = "kafka://h:9092/p".parse().unwrap();
        assert_eq!(setting(&plain, "enable.idempotence"), Some("true"));
        assert_eq!(setting(&plain, "security.protocol"), Some("plaintext"));
        assert_eq!(setting(&u, "max.in.flight.requests.per.connection"), Some("1"));
        assert_eq!(setting(&plain, "max.in.flight.requests.per.connection"), None);
        // A password with '/', '?' or '#' not percent-encoded: refused, never shown.
        for leaky in [
            "kafka://u:se/cret@h:9092/p",
            "kafka://u:pa?ss@h:9092/p",
            "kafka://u:pa#ss@h:9092/p",
            "kafka://tok/en@h:9092/p",
        ] {
            let e = leaky.parse::<KafkaUrl>().unwrap_err().to_string();
            assert!(!e.contains("cret") && !e.contains("ss@") && !e.contains("en@"), "{e}");
            assert!(e.starts_with("bad Kafka address"), "{e}");
        }
        for bad in [
            "kafka://h:9092",
            "kafka://h:9092/",
            "kafka://h/p",
            "kafka:///p",
            "kafka://h:9092/a b",
            "kafka://h:9092/p?acks=2",
            "kafka://h:9092/p?compression=brotli",
            "kafka://h:9092/p?sasl=PLAIN",
            "kafka://u:pw@h:9092/p?nope=1",
            "kafka://u:pw@h:9092/p?partitions=0",
            "kafka://u:pw@h:9092/p?timeout=0s",
            "kafka://u:pw@h:9092/p?transactional_id=t&acks=1",
            "kafka://u:pw@h:9092/p?acks=0",
            "kafka://u:pw@h:9092/p?rdkafka.bootstrap.servers=elsewhere:9092",
            "kafka://u:pw@h:9092/p?rdkafka.enable.idempotence=false",
            "kafka://u:pw@h:9092/p?rdkafka.max.in.flight=5",
            "kafka://u:pw@h:9092/p?rdkafka.partitioner=random",
            "kafka://u:pw@h:9092/p?rdkafka.delivery.timeout.ms=5",
            "nats://h:9092/p",
        ] {
            let e = bad.parse::<KafkaUrl>().unwrap_err().to_string();
            assert!(!e.contains("pw@"), "{e}");
            assert!(e.starts_with("bad Kafka address"), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
