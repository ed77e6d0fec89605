//! The VPC Flow Logs record format: AWS's format strings (`${version} ${account-id} …`), the header
//! line of its S3 delivery, and rendering of records as space-separated text or JSON lines.
//!
//! Field names, their versions and the default format follow AWS's flow log documentation
//! (docs/aws-facts.md §3); JSON keys are the column names of AWS's Athena table and Parquet delivery
//! (`account-id` → `account_id`), with `-` values as `null`.

use std::net::IpAddr;

use crate::base::FlowKey;

/// AWS's default format: the version 2 fields.
pub const DEFAULT_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} \
${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

/// A field of a flow log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Field {
    Version,
    AccountId,
    InterfaceId,
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    VpcId,
    SubnetId,
    InstanceId,
    TcpFlags,
    Type,
    PktSrcAddr,
    PktDstAddr,
    Region,
    AzId,
    SublocationType,
    SublocationId,
    PktSrcAwsService,
    PktDstAwsService,
    FlowDirection,
    TrafficPath,
}

/// Whether a column holds a number (JSON number, Athena int/bigint) or a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
}

use Kind::{Number, Text};

/// Every field: its name in format strings, the version that introduced it, its column name, its kind.
const FIELDS: [(Field, &str, u8, &str, Kind); 29] = [
    (Field::Version, "version", 2, "version", Number),
    (Field::AccountId, "account-id", 2, "account_id", Text),
    (Field::InterfaceId, "interface-id", 2, "interface_id", Text),
    (Field::SrcAddr, "srcaddr", 2, "srcaddr", Text),
    (Field::DstAddr, "dstaddr", 2, "dstaddr", Text),
    (Field::SrcPort, "srcport", 2, "srcport", Number),
    (Field::DstPort, "dstport", 2, "dstport", Number),
    (Field::Protocol, "protocol", 2, "protocol", Number),
    (Field::Packets, "packets", 2, "packets", Number),
    (Field::Bytes, "bytes", 2, "bytes", Number),
    (Field::Start, "start", 2, "start", Number),
    (Field::End, "end", 2, "end", Number),
    (Field::Action, "action", 2, "action", Text),
    (Field::LogStatus, "log-status", 2, "log_status", Text),
    (Field::VpcId, "vpc-id", 3, "vpc_id", Text),
    (Field::SubnetId, "subnet-id", 3, "subnet_id", Text),
    (Field::InstanceId, "instance-id", 3, "instance_id", Text),
    (Field::TcpFlags, "tcp-flags", 3, "tcp_flags", Number),
    (Field::Type, "type", 3, "type", Text),
    (Field::PktSrcAddr, "pkt-srcaddr", 3, "pkt_srcaddr", Text),
    (Field::PktDstAddr, "pkt-dstaddr", 3, "pkt_dstaddr", Text),
    (Field::Region, "region", 4, "region", Text),
    (Field::AzId, "az-id", 4, "az_id", Text),
    (
        Field::SublocationType,
        "sublocation-type",
        4,
        "sublocation_type",
        Text,
    ),
    (
        Field::SublocationId,
        "sublocation-id",
        4,
        "sublocation_id",
        Text,
    ),
    (
        Field::PktSrcAwsService,
        "pkt-src-aws-service",
        5,
        "pkt_src_aws_service",
        Text,
    ),
    (
        Field::PktDstAwsService,
        "pkt-dst-aws-service",
        5,
        "pkt_dst_aws_service",
        Text,
    ),
    (
        Field::FlowDirection,
        "flow-direction",
        5,
        "flow_direction",
        Text,
    ),
    (
        Field::TrafficPath,
        "traffic-path",
        5,
        "traffic_path",
        Number,
    ),
];

impl Field {
    fn info(self) -> &'static (Field, &'static str, u8, &'static str, Kind) {
        FIELDS
            .iter()
            .find(|f| f.0 == self)
            .expect("every Field has a row in FIELDS")
    }

    /// The name in AWS format strings and in the S3 header line.
    pub fn name(self) -> &'static str {
        self.info().1
    }

    /// The flow log version that introduced the field.
    pub fn version(self) -> u8 {
        self.info().2
    }

    /// The column name in AWS's Athena table (and vxtap's JSON keys).
    pub fn column(self) -> &'static str {
        self.info().3
    }

    fn kind(self) -> Kind {
        self.info().4
    }
}

/// A parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    fields: Vec<Field>,
    version: u8,
}

/// The metadata a record takes from its mirror session: AWS identifiers from the session config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMeta {
    /// The session's name: the key of its records in a Kafka output.
    pub session: String,
    /// Account id.
    pub account_id: Option<String>,
    /// The source ENI id.
    pub interface_id: Option<String>,
    /// VPC id.
    pub vpc_id: Option<String>,
    /// Subnet id.
    pub subnet_id: Option<String>,
    /// Instance id.
    pub instance_id: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Availability Zone id.
    pub az_id: Option<String>,
}

/// Whether traffic entered or left the ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To one of the ENI's addresses.
    Ingress,
    /// From one of the ENI's addresses.
    Egress,
    /// Neither address is known to be the ENI's.
    Unknown,
}

/// The counters of one direction of one flow in one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCounts {
    /// The 5-tuple as the packets carried it.
    pub key: FlowKey,
    /// Packets.
    pub packets: u64,
    /// IP bytes (the IP headers' lengths).
    pub bytes: u64,
    /// TCP flags OR-ed, in AWS's encoding.
    pub tcp_flags: u8,
    /// Ingress or egress.
    pub direction: Direction,
}

/// One record to render.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The session's metadata.
    pub meta: &'a SessionMeta,
    /// The flow; `None` for a SKIPDATA record, whose flow fields are all `-`.
    pub flow: Option<&'a FlowCounts>,
    /// Unix seconds of the first packet.
    pub start: u64,
    /// Unix seconds of the last packet.
    pub end: u64,
    /// A NODATA record: a configured session delivered nothing for the whole interval (`flow` is
    /// then `None`, and `start`/`end` are the interval's).
    pub no_data: bool,
}

/// Numbers and IPv4 addresses are most of a record; `itoa` writes them several times faster than
/// `Display` through `core::fmt`, which a replay profile showed taking about 40 % of a flowlog shard.
fn push_number(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// A value of one field.
enum Value<'a> {
    Missing,
    Number(u64),
    Text(&'a str),
    Addr(IpAddr),
}

impl Format {
    /// Parses AWS's syntax: `${field}` tokens separated by spaces. Unknown, duplicated or malformed
    /// tokens are refused with the token named.
    pub fn parse(s: &str) -> Result<Format, String> {
        let mut fields = Vec::new();
        for token in s.split_whitespace() {
            let name = token
                .strip_prefix("${")
                .and_then(|t| t.strip_suffix('}'))
                .ok_or_else(|| {
                    format!(
                        "{token:?} is not a field; write fields as ${{name}}, separated by spaces"
                    )
                })?;
            let field = FIELDS
                .iter()
                .find(|f| f.1 == name)
                .map(|f| f.0)
                .ok_or_else(|| {
                    format!(
                        "unknown field ${{{name}}}; vxtap supports the version 2-5 fields: {}",
                        FIELDS.iter().map(|f| f.1).collect::<Vec<_>>().join(", ")
                    )
                })?;
            if fields.contains(&field) {
                return Err(format!("${{{name}}} appears twice"));
            }
            fields.push(field);
        }
        if fields.is_empty() {
            return Err("the format has no fields".into());
        }
        let version = fields.iter().map(|f| f.version()).max().unwrap_or(2);
        Ok(Format { fields, version })
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The value of `${version}`: the highest version among the selected fields, as AWS computes it.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The first line of every file, as in AWS's S3 delivery: the field names separated by spaces.
    pub fn header(&self) -> String {
        let names: Vec<_> = self.fields.iter().map(|f| f.name()).collect();
        format!("{}\n", names.join(" "))
    }

    fn value<'a>(&self, field: Field, r: &Record<'a>) -> Value<'a> {
        let text = |v: &'a Option<String>| v.as_deref().map_or(Value::Missing, Value::Text);
        let flow = r.flow;
        let from_flow = |f: fn(&FlowCounts) -> Value<'a>| flow.map_or(Value::Missing, f);
        match field {
            Field::Version => Value::Number(u64::from(self.version)),
            Field::AccountId => text(&r.meta.account_id),
            Field::InterfaceId => text(&r.meta.interface_id),
            Field::SrcAddr | Field::PktSrcAddr => from_flow(|f| Value::Addr(f.key.src)),
            Field::DstAddr | Field::PktDstAddr => from_flow(|f| Value::Addr(f.key.dst)),
            Field::SrcPort => from_flow(|f| Value::Number(u64::from(f.key.src_port))),
            Field::DstPort => from_flow(|f| Value::Number(u64::from(f.key.dst_port))),
            Field::Protocol => from_flow(|f| Value::Number(u64::from(f.key.protocol))),
            Field::Packets => from_flow(|f| Value::Number(f.packets)),
            Field::Bytes => from_flow(|f| Value::Number(f.bytes)),
            Field::Start => Value::Number(r.start),
            Field::End => Value::Number(r.end),
            // Mirrored packets have passed the source's security groups and network ACLs: AWS mirrors
            // nothing that they drop (docs/aws-facts.md §1, "Security groups and network ACLs").
            Field::Action => from_flow(|_| Value::Text("ACCEPT")),
            Field::LogStatus => Value::Text(match (flow, r.no_data) {
                (Some(_), _) => "OK",
                (None, true) => "NODATA",
                (None, false) => "SKIPDATA",
            }),
            Field::VpcId => text(&r.meta.vpc_id),
            Field::SubnetId => text(&r.meta.subnet_id),
            Field::InstanceId => text(&r.meta.instance_id),
            Field::TcpFlags => from_flow(|f| Value::Number(u64::from(f.tcp_flags))),
            Field::Type => {
                from_flow(|f| Value::Text(if f.key.src.is_ipv4() { "IPv4" } else { "IPv6" }))
            }
            Field::Region => text(&r.meta.region),
            Field::AzId => text(&r.meta.az_id),
            Field::FlowDirection => from_flow(|f| match f.direction {
                Direction::Ingress => Value::Text("ingress"),
                Direction::Egress => Value::Text("egress"),
                Direction::Unknown => Value::Missing,
            }),
            // Not knowable from a mirrored packet: Wavelength/Outpost placement, AWS service prefixes,
            // the egress path.
            Field::SublocationType
            | Field::SublocationId
            | Field::PktSrcAwsService
            | Field::PktDstAwsService
            | Field::TrafficPath => Value::Missing,
        }
    }

    /// Appends the record as one space-separated line (without the newline).
    pub fn render_text(&self, r: &Record<'_>, out: &mut String) {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            match self.value(*field, r) {
                Value::Missing => {
                    out.push('-');
                }
                Value::Number(n) => {
                    push_number(out, n);
                }
                Value::Addr(a) => {
                    crate::modules::eve::push_ip(out, a);
                }
                Value::Text("") => {
                    out.push('-');
                }
                Value::Text(t) => {
                    // A configured value with a space would shift every later column.
                    out.extend(t.chars().map(|c| if c.is_whitespace() { '_' } else { c }));
                }
            }
        }
    }

    /// Appends the record as one JSON object (without the newline).
    pub fn render_json(&self, r: &Record<'_>, out: &mut String) {
        out.push('{');
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(field.column());
            out.push_str("\":");
            match (self.value(*field, r), field.kind()) {
                (Value::Missing, _) => {
                    out.push_str("null");
                }
                (Value::Number(n), Number) => {
                    push_number(out, n);
                }
                (Value::Number(n), Text) => {
                    out.push('"');
                    push_number(out, n);
                    out.push('"');
                }
                (Value::Addr(a), _) => {
                    out.push('"');
                    crate::modules::eve::push_ip(out, a);
                    out.push('"');
                }
                (Value::Text(t), _) => {
                    crate::modules::eve::json_str(out, t);
                }
            }
        }
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SessionMeta {
        SessionMeta {
            account_id: Some("123456789010".into()),
            interface_id: Some("eni-1235b8ca123456789".into()),
            vpc_id: Some("vpc-0a1b".into()),
            region: Some("us-east-1".into()),
            ..SessionMeta::default()
        }
    }

    fn ping() -> FlowCounts {
        FlowCounts {
            key: FlowKey {
                src: "203.0.113.12".parse().unwrap(),
                dst: "172.31.16.139".parse().unwrap(),
                src_port: 0,
                dst_port: 0,
                protocol: 1,
            },
            packets: 4,
            bytes: 336,
            tcp_flags: 0,
            direction: Direction::Ingress,
        }
    }

    #[test]
    fn default_format_renders_like_awss_example() {
        let f = Format::parse(DEFAULT_FORMAT).unwrap();
        assert_eq!(f.version(), 2);
        assert_eq!(
            f.header(),
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n"
        );
        let (m, c) = (meta(), ping());
        let mut line = String::new();
        f.render_text(
            &Record {
                meta: &m,
                flow: Some(&c),
                start: 1432917027,
                end: 1432917142,
                no_data: false,
            },
            &mut line,
        );
        // AWS's documented example of an accepted ping.
        assert_eq!(
            line,
            "2 123456789010 eni-1235b8ca123456789 203.0.113.12 172.31.16.139 0 0 1 4 336 1432917027 1432917142 ACCEPT OK"
        );
        line.clear();
        f.render_text(
            &Record {
                meta: &m,
                flow: None,
                start: 1431280876,
                end: 1431280934,
                no_data: false,
            },
            &mut line,
        );
        assert_eq!(
            line,
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - SKIPDATA"
        );
        line.clear();
        f.render_text(
            &Record {
                meta: &m,
                flow: None,
                start: 1431280876,
                end: 1431280934,
                no_data: true,
            },
            &mut line,
        );
        // AWS's documented form of an interval without traffic.
        assert_eq!(
            line,
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA"
        );
    }

    #[test]
    fn version_is_the_highest_selected_and_unknowns_are_dashes() {
        let f = Format::parse(
            "${srcaddr}  ${flow-direction} ${vpc-id} ${traffic-path} ${az-id} ${type}",
        )
        .unwrap();
        assert_eq!(f.version(), 5);
        let (m, c) = (meta(), ping());
        let r = Record {
            meta: &m,
            flow: Some(&c),
            start: 1,
            end: 2,
            no_data: false,
        };
        let mut line = String::new();
        f.render_text(&r, &mut line);
        assert_eq!(line, "203.0.113.12 ingress vpc-0a1b - - IPv4");
        line.clear();
        f.render_json(&r, &mut line);
        assert_eq!(
            line,
            r#"{"srcaddr":"203.0.113.12","flow_direction":"ingress","vpc_id":"vpc-0a1b","traffic_path":null,"az_id":null,"type":"IPv4"}"#
        );
        assert_eq!(Format::parse("${vpc-id}").unwrap().version(), 3);
        assert_eq!(Format::parse("${region}").unwrap().version(), 4);
    }

    #[test]
    fn bad_formats_name_the_token() {
        let e = Format::parse("${version} ${acount-id}").unwrap_err();
        assert!(e.starts_with("unknown field ${acount-id}"), "{e}");
        let e = Format::parse("${version} srcaddr").unwrap_err();
        assert!(e.starts_with("\"srcaddr\" is not a field"), "{e}");
        let e = Format::parse("${bytes} ${bytes}").unwrap_err();
        assert_eq!(e, "${bytes} appears twice");
        assert!(Format::parse("  ").is_err());
    }

    #[test]
    fn json_escapes_configured_strings() {
        let m = SessionMeta {
            account_id: Some("a\"b\\c\n".into()),
            ..SessionMeta::default()
        };
        let f = Format::parse("${account-id} ${packets}").unwrap();
        let mut line = String::new();
        f.render_json(
            &Record {
                meta: &m,
                flow: None,
                start: 0,
                end: 0,
                no_data: false,
            },
            &mut line,
        );
        assert_eq!(line, r#"{"account_id":"a\"b\\c\u000a","packets":null}"#);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["account_id"], "a\"b\\c\n");
    }
}
