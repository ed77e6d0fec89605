//! One test per statement kind, on the compiled scopes and a session built by hand; the records
//! themselves are checked end to end in tests/accessscope.rs.

use super::*;
use crate::base::SessionKey;

/// A module config with the temporary directory holding its scope files, removed when this drops.
/// The files are read when the config is first validated or compiled, so they live as long as it.
struct Scoped {
    config: AccessScopeConfig,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Scoped {
    type Target = AccessScopeConfig;
    fn deref(&self) -> &AccessScopeConfig {
        &self.config
    }
}

/// Writes each scope into its own file and returns the module config that reads them.
fn config(scopes: &[&str], extra: &str) -> Scoped {
    let dir = tempfile::Builder::new()
        .prefix("vxtap-accessscope-")
        .tempdir()
        .unwrap();
    let files: Vec<String> = scopes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let f = dir.path().join(format!("scope{i}.json"));
            std::fs::write(&f, s).unwrap();
            format!("{:?}", f.display().to_string())
        })
        .collect();
    let text = format!("scopes = [{}]\n{extra}", files.join(", "));
    Scoped {
        config: toml::from_str(&text).unwrap(),
        _dir: dir,
    }
}

/// An inventory file with `json` in it, removed when the handle drops.
fn inventory(prefix: &str, json: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".json")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), json).unwrap();
    file
}

fn compiled(scopes: &[&str], extra: &str) -> Arc<Compiled> {
    let c = config(scopes, extra);
    c.validate().unwrap();
    c.compiled().unwrap()
}

/// The mirrored ENI: 10.0.1.10, in subnet-a of vpc-a, instance i-web, security group sg-web.
fn session() -> Session {
    let key = SessionKey {
        source: "10.0.1.10".parse().unwrap(),
        vni: 100,
    };
    let mut s = Session::new(key, 1, false);
    s.eni = Some("eni-0a1b2c3d4e5f60718".into());
    s.aws.instance_id = Some("i-web".into());
    s.aws.subnet_id = Some("subnet-a".into());
    s.aws.vpc_id = Some("vpc-a".into());
    s.aws.security_groups = vec!["sg-web".into()];
    s
}

/// The scopes (index, path) a flow client → server is a finding of.
fn judge(c: &Compiled, client: &str, server: &str, protocol: u8) -> Vec<(u16, u16)> {
    let (client, cport) = client.rsplit_once(':').unwrap();
    let (server, sport) = server.rsplit_once(':').unwrap();
    let key = FlowKey {
        src: client.trim_matches(['[', ']']).parse().unwrap(),
        dst: server.trim_matches(['[', ']']).parse().unwrap(),
        src_port: cport.parse().unwrap(),
        dst_port: sport.parse().unwrap(),
        protocol,
    };
    let mut hits = ArrayVec::new();
    c.judge(&session(), key, c.bits(&session(), key), &mut hits);
    let by_bits: Vec<(u16, u16)> = hits.iter().map(|h| (h.scope, h.path)).collect();
    hits.clear();
    c.judge_paths(&session(), key, &mut hits);
    let by_paths: Vec<(u16, u16)> = hits.iter().map(|h| (h.scope, h.path)).collect();
    assert_eq!(by_bits, by_paths, "by bits and path by path: {key:?}");
    by_bits
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const HIT: &[(u16, u16)] = &[(0, 0)];
const MISS: &[(u16, u16)] = &[];

fn header(stmt: &str) -> String {
    format!(r#"{{"MatchPaths":[{{"Source":{{"PacketHeaderStatement":{stmt}}}}}]}}"#)
}

#[test]
fn addresses_are_the_packets_source_and_destination() {
    let c = compiled(
        &[&header(
            r#"{"SourceAddresses":["10.0.0.0/16","192.0.2.7"],"DestinationAddresses":["2001:db8::/32","198.51.100.0/24"]}"#,
        )],
        "",
    );
    assert_eq!(judge(&c, "10.0.1.10:40000", "198.51.100.9:443", TCP), HIT);
    assert_eq!(judge(&c, "192.0.2.7:40000", "198.51.100.9:443", TCP), HIT);
    assert_eq!(judge(&c, "10.1.1.10:40000", "198.51.100.9:443", TCP), MISS);
    // The client is the packet's source: the reverse orientation is another flow.
    assert_eq!(judge(&c, "198.51.100.9:443", "10.0.1.10:40000", TCP), MISS);
    assert_eq!(judge(&c, "10.0.1.10:40000", "198.51.101.9:443", TCP), MISS);
    let e = config(&[&header(r#"{"SourceAddresses":["10.0.0.0/40"]}"#)], "")
        .validate()
        .unwrap_err();
    assert!(
        e.ends_with("MatchPaths[0].Source.PacketHeaderStatement.SourceAddresses[0]: \"10.0.0.0/40\" is not an address or CIDR"),
        "{e}"
    );
    assert!(
        e.starts_with("scope /") && e.contains("scope0.json: "),
        "{e}"
    );
}

#[test]
fn prefix_lists_come_from_the_config_and_join_addresses() {
    let c = compiled(
        &[&header(
            r#"{"SourcePrefixLists":["pl-0123456789abcdef0"],"SourceAddresses":["192.0.2.7"]}"#,
        )],
        "[prefix_lists]\n\"pl-0123456789abcdef0\" = [\"10.1.0.0/16\"]\n",
    );
    assert_eq!(judge(&c, "10.1.2.3:1", "10.0.1.10:22", TCP), HIT);
    assert_eq!(judge(&c, "192.0.2.7:1", "10.0.1.10:22", TCP), HIT);
    assert_eq!(judge(&c, "10.2.2.3:1", "10.0.1.10:22", TCP), MISS);
    let e = config(
        &[&header(
            r#"{"DestinationPrefixLists":["pl-1","pl-missing"]}"#,
        )],
        "[prefix_lists]\n\"pl-1\" = [\"10.1.0.0/16\"]\n",
    )
    .validate()
    .unwrap_err();
    assert!(
        e.contains("MatchPaths[0].Source.PacketHeaderStatement.DestinationPrefixLists[1]: prefix list \"pl-missing\" is not in [module.prefix_lists]"),
        "{e}"
    );
}

#[test]
fn ports_are_single_or_ranges_and_need_tcp_or_udp() {
    let c = compiled(
        &[&header(
            r#"{"DestinationPorts":["3306","5432"],"SourcePorts":["1024-65535"]}"#,
        )],
        "",
    );
    assert_eq!(judge(&c, "192.0.2.1:50000", "10.0.1.10:3306", TCP), HIT);
    assert_eq!(judge(&c, "192.0.2.1:50000", "10.0.1.10:5432", UDP), HIT);
    assert_eq!(judge(&c, "192.0.2.1:50000", "10.0.1.10:3307", TCP), MISS);
    assert_eq!(judge(&c, "192.0.2.1:1023", "10.0.1.10:3306", TCP), MISS);
    // ICMP has no ports: a port condition never holds for it.
    assert_eq!(judge(&c, "192.0.2.1:0", "10.0.1.10:0", 1), MISS);
    let e = config(&[&header(r#"{"DestinationPorts":["22","65535-1"]}"#)], "")
        .validate()
        .unwrap_err();
    assert!(
        e.contains("DestinationPorts[1]: \"65535-1\": the range's start is above its end"),
        "{e}"
    );
}

#[test]
fn protocols_are_tcp_or_udp() {
    let c = compiled(&[&header(r#"{"Protocols":["udp"]}"#)], "");
    assert_eq!(judge(&c, "10.0.1.10:5000", "10.0.0.2:53", UDP), HIT);
    assert_eq!(judge(&c, "10.0.1.10:5000", "10.0.0.2:53", TCP), MISS);
    assert_eq!(judge(&c, "10.0.1.10:0", "10.0.0.2:0", 1), MISS);
    // Without Protocols, any protocol.
    let any = compiled(&[&header(r#"{"SourceAddresses":["10.0.1.10"]}"#)], "");
    assert_eq!(judge(&any, "10.0.1.10:0", "10.0.0.2:0", 1), HIT);
    let e = config(&[&header(r#"{"Protocols":["tcp","icmp"]}"#)], "")
        .validate()
        .unwrap_err();
    assert!(
        e.contains("Protocols[1]: \"icmp\" is not a protocol"),
        "{e}"
    );
}

#[test]
fn resource_ids_name_the_mirrored_eni_and_inventory_peers() {
    let inv = inventory(
        "vxtap-accessscope-inv-",
        r#"{"NetworkInterfaces":[{"NetworkInterfaceId":"eni-db","SubnetId":"subnet-db","VpcId":"vpc-a",
            "Attachment":{"InstanceId":"i-db"},"Groups":[{"GroupId":"sg-db"}],"PrivateIpAddress":"10.0.2.20"}]}"#,
    );
    let extra = format!("inventory = {:?}\n", inv.path().display().to_string());
    for (source, dest, client, server, expect) in [
        // The mirrored ENI by each of its ids, as client.
        (
            "eni-0a1b2c3d4e5f60718",
            "sg-db",
            "10.0.1.10:40000",
            "10.0.2.20:5432",
            HIT,
        ),
        ("i-web", "i-db", "10.0.1.10:40000", "10.0.2.20:5432", HIT),
        (
            "subnet-a",
            "subnet-db",
            "10.0.1.10:40000",
            "10.0.2.20:5432",
            HIT,
        ),
        ("vpc-a", "vpc-a", "10.0.1.10:40000", "10.0.2.20:5432", HIT),
        ("sg-web", "eni-db", "10.0.1.10:40000", "10.0.2.20:5432", HIT),
        (
            "arn:aws:ec2:eu-west-1:111122223333:security-group/sg-web",
            "eni-db",
            "10.0.1.10:40000",
            "10.0.2.20:5432",
            HIT,
        ),
        // The path's Source is the client: the server being the ENI does not do.
        (
            "sg-web",
            "eni-db",
            "10.0.2.20:40000",
            "10.0.1.10:5432",
            MISS,
        ),
        (
            "sg-other",
            "eni-db",
            "10.0.1.10:40000",
            "10.0.2.20:5432",
            MISS,
        ),
        // A peer the inventory does not know has no ids.
        (
            "sg-web",
            "eni-db",
            "10.0.1.10:40000",
            "10.0.2.21:5432",
            MISS,
        ),
    ] {
        let scope = format!(
            r#"{{"MatchPaths":[{{"Source":{{"ResourceStatement":{{"Resources":["{source}"]}}}},
                "Destination":{{"ResourceStatement":{{"Resources":["{dest}"]}}}}}}]}}"#
        );
        let c = compiled(&[&scope], &extra);
        assert_eq!(
            judge(&c, client, server, TCP),
            expect,
            "{source} → {dest}, {client} → {server}"
        );
    }
}

#[test]
fn resource_types_and_the_internet_gateway_approximation() {
    let eni_to_igw = r#"{"NetworkInsightsAccessScopeContent":{"NetworkInsightsAccessScopeId":"nis-1",
        "MatchPaths":[{"Source":{"ResourceStatement":{"ResourceTypes":["AWS::EC2::NetworkInterface"]}},
                       "Destination":{"ResourceStatement":{"ResourceTypes":["AWS::EC2::InternetGateway"]}}}]}}"#;
    let c = compiled(&[eni_to_igw], "vpc_cidrs = [\"10.0.0.0/16\"]\n");
    assert_eq!(judge(&c, "10.0.1.10:40000", "198.51.100.9:443", TCP), HIT);
    assert_eq!(judge(&c, "10.0.1.10:40000", "[2001:db8::9]:443", TCP), HIT);
    // Inside the VPC, private elsewhere (peering, VPN), or the internet opening the flow: no.
    assert_eq!(judge(&c, "10.0.1.10:40000", "10.0.3.3:443", TCP), MISS);
    assert_eq!(judge(&c, "10.0.1.10:40000", "172.16.0.1:443", TCP), MISS);
    assert_eq!(judge(&c, "10.0.1.10:40000", "100.64.0.1:443", TCP), MISS);
    assert_eq!(judge(&c, "198.51.100.9:40000", "10.0.1.10:443", TCP), MISS);
    // A public address inside vpc_cidrs is the VPC's own.
    let c = compiled(
        &[eni_to_igw],
        "vpc_cidrs = [\"10.0.0.0/16\", \"198.51.100.0/24\"]\n",
    );
    assert_eq!(judge(&c, "10.0.1.10:40000", "198.51.100.9:443", TCP), MISS);
    // Types of the ENI and of a peer inside the VPC.
    for (ty, expect) in [
        ("AWS::EC2::Instance", MISS),
        ("AWS::EC2::Subnet", HIT),
        ("AWS::EC2::VPC", HIT),
        ("AWS::EC2::SecurityGroup", HIT),
        ("AWS::EC2::NetworkInterface", HIT),
    ] {
        let scope = format!(
            r#"{{"MatchPaths":[{{"Source":{{"ResourceStatement":{{"ResourceTypes":["AWS::EC2::Instance"]}}}},
                "Destination":{{"ResourceStatement":{{"ResourceTypes":["{ty}"]}}}}}}]}}"#
        );
        let c = compiled(&[&scope], "vpc_cidrs = [\"10.0.0.0/16\"]\n");
        assert_eq!(judge(&c, "10.0.1.10:1", "10.0.7.7:22", TCP), expect, "{ty}");
    }
}

#[test]
fn exclude_paths_take_findings_back() {
    let c = compiled(
        &[
            r#"{"MatchPaths":[{"Destination":{"PacketHeaderStatement":{"DestinationPorts":["5432"]}}},
                            {"Destination":{"PacketHeaderStatement":{"DestinationPorts":["1-65535"]}}}],
              "ExcludePaths":[{"Source":{"PacketHeaderStatement":{"SourceAddresses":["10.0.0.0/16"]}}}]}"#,
        ],
        "",
    );
    assert_eq!(judge(&c, "192.0.2.1:50000", "10.0.1.10:5432", TCP), HIT);
    // The first MatchPath that matches is the one reported.
    assert_eq!(judge(&c, "192.0.2.1:50000", "10.0.1.10:22", TCP), [(0, 1)]);
    assert_eq!(judge(&c, "10.0.9.9:50000", "10.0.1.10:5432", TCP), MISS);
}

#[test]
fn a_flow_is_judged_by_every_scope() {
    let a = header(r#"{"Protocols":["tcp"]}"#);
    let b = header(r#"{"Protocols":["udp"]}"#);
    let c = compiled(&[&a, &b, &a], "");
    assert_eq!(
        judge(&c, "10.0.1.10:1", "10.0.0.2:2", TCP),
        [(0, 0), (2, 0)]
    );
    assert_eq!(judge(&c, "10.0.1.10:1", "10.0.0.2:2", UDP), [(1, 0)]);
}

#[test]
fn check_config_says_what_cannot_be_observed_and_how_it_is_treated() {
    let c = config(
        &[r#"{"MatchPaths":[
            {"Source":{"ResourceStatement":{"ResourceTypes":["AWS::EC2::NetworkInterface"]}},
             "Destination":{"ResourceStatement":{"Resources":["igw-0abc"]}},
             "ThroughResources":[{"ResourceStatement":{"ResourceTypes":["AWS::EC2::NatGateway"]}}]},
            {"Destination":{"ResourceStatement":{"ResourceTypes":["AWS::EC2::TransitGatewayAttachment"]}}},
            {"Destination":{"ResourceStatement":{"Resources":["nat-0123","eni-1"]}}}],
           "ExcludePaths":[{"ThroughResources":[{"ResourceStatement":{"Resources":["tgw-attach-1"]}}]}]}"#],
        "vpc_cidrs = [\"10.0.0.0/16\"]\n",
    );
    c.validate().unwrap();
    let notices: Vec<String> = ModuleConfig::notices(&*c)
        .into_iter()
        .map(|n| n.split_once("scope0.json: ").unwrap().1.to_owned())
        .collect();
    let expect = [
        "MatchPaths[0].Destination.ResourceStatement.Resources[0]: \"igw-0abc\" is taken as the internet gateway approximation (the peer address is public and outside vpc_cidrs)",
        "MatchPaths[0].ThroughResources: the hops between a flow's ends are not visible in one ENI's mirror; ignored: the path is judged on its Source and Destination only, so it may report flows that did not pass through these resources",
        "MatchPaths[1].Destination.ResourceStatement.ResourceTypes[0]: \"AWS::EC2::TransitGatewayAttachment\" is not a type a mirror can attribute to a flow's end (NAT gateways, transit gateway attachments, peering connections, endpoints and load balancers are hops or hide the real peer); it never matches",
        "MatchPaths[1].Destination.ResourceStatement.ResourceTypes: no type left that can match; this MatchPath never matches",
        "MatchPaths[2].Destination.ResourceStatement.Resources[0]: \"nat-0123\" is not an end a mirror can name (only ENIs, instances, subnets, VPCs, security groups and the internet gateway); it never matches",
        "ExcludePaths[0].ThroughResources: the hops between a flow's ends are not visible in one ENI's mirror; this ExcludePath never applies (so that it hides no finding)",
    ];
    assert_eq!(notices, expect);
    let compiled = c.compiled().unwrap();
    // The unobservable ExcludePath does not hide the finding; the TGW path never matches.
    let key = |port| FlowKey {
        src: "10.0.1.10".parse().unwrap(),
        dst: "198.51.100.1".parse().unwrap(),
        src_port: 40000,
        dst_port: port,
        protocol: TCP,
    };
    let mut hits = ArrayVec::new();
    compiled.judge(
        &session(),
        key(443),
        compiled.bits(&session(), key(443)),
        &mut hits,
    );
    assert_eq!(
        hits.iter().map(|h| (h.scope, h.path)).collect::<Vec<_>>(),
        HIT
    );
    // An observable scope has nothing to say.
    let quiet = config(&[&header(r#"{"Protocols":["tcp"]}"#)], "");
    quiet.validate().unwrap();
    assert!(ModuleConfig::notices(&*quiet).is_empty());
}

#[test]
fn config_errors_name_the_key_or_the_file() {
    let e = |scopes: &[&str], extra: &str| config(scopes, extra).validate().unwrap_err();
    assert!(e(&[&header("{}")], "interval_secs = 0\n").starts_with("interval_secs: 0"));
    assert!(e(&[&header("{}")], "max_findings = 0\n").starts_with("max_findings: 0"));
    assert!(e(&[&header("{}")], "[prefix_lists]\n\"pl-1\" = []\n").starts_with("prefix_lists.pl-1"));
    let missing: AccessScopeConfig = toml::from_str("scopes = [\"/nonexistent/x.json\"]").unwrap();
    assert!(missing
        .validate()
        .unwrap_err()
        .starts_with("scope /nonexistent/x.json: cannot read"));
    let none: AccessScopeConfig = toml::from_str("scopes = []").unwrap();
    assert!(none.validate().unwrap_err().starts_with("scopes:"));
}

#[test]
fn public_means_routable_through_an_internet_gateway() {
    for a in ["198.51.100.1", "8.8.8.8", "2001:db8::1", "2600::1"] {
        assert!(is_public(a.parse().unwrap()), "{a}");
    }
    for a in [
        "10.1.2.3",
        "172.31.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "fd00::1",
        "fe80::1",
        "::1",
        "ff02::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(!is_public(a.parse().unwrap()), "{a}");
    }
}

#[test]
fn a_learned_session_finds_its_ids_in_the_inventory_by_address() {
    let inv = inventory(
        "vxtap-accessscope-inv2-",
        r#"{"NetworkInterfaces":[{"NetworkInterfaceId":"eni-web","Groups":[{"GroupId":"sg-web2"}],
            "PrivateIpAddress":"10.0.1.10"}]}"#,
    );
    let c = compiled(
        &[
            r#"{"MatchPaths":[{"Source":{"ResourceStatement":{"Resources":["sg-web2"],
              "ResourceTypes":["AWS::EC2::Instance"]}}}]}"#,
        ],
        &format!("inventory = {:?}\n", inv.path().display().to_string()),
    );
    // Learned: no ENI id, no AWS ids; its address is the outer source.
    let learned = Session::new(
        SessionKey {
            source: "10.0.1.10".parse().unwrap(),
            vni: 7,
        },
        2,
        true,
    );
    let key = FlowKey {
        src: "10.0.1.10".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        src_port: 1,
        dst_port: 2,
        protocol: TCP,
    };
    let mut hits = ArrayVec::new();
    c.judge(&learned, key, c.bits(&learned, key), &mut hits);
    assert_eq!(hits.len(), 1);
}

/// Judging by bits gives what walking the paths gives, for bench/'s ten scopes (every statement
/// kind) and flows at and beside every edge they draw: each range's first and last address and
/// port, and one past them.
#[test]
fn bits_judge_as_the_paths_do() {
    let bench = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/scopes");
    let mut files: Vec<String> = std::fs::read_dir(bench)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| !p.ends_with("never.json"))
        .collect();
    files.sort();
    let scopes: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let c = compiled(
        &scopes,
        r#"vpc_cidrs = ["10.0.0.0/8", "2600:1f18:4000::/40"]
[prefix_lists]
"pl-0123456789abcdef0" = ["10.17.0.0/16", "10.33.0.0/16", "10.49.0.0/16"]"#,
    );
    assert!(c.conditions.is_some(), "bench's scopes fit in the bits");
    let mut addrs: Vec<IpAddr> = vec!["10.0.1.10".parse().unwrap()];
    for net in [
        "10.0.0.0/16",
        "10.0.0.0/8",
        "10.17.0.0/16",
        "10.49.0.0/16",
        "198.18.0.0/24",
        "198.18.199.0/24",
        "10.16.0.2/32",
        "fd00:ec2::253/128",
        "2600:1f18:4000::/40",
        "::/0",
        "100.64.0.0/10",
        "8.8.8.0/24",
    ] {
        let n: IpNet = net.parse().unwrap();
        for a in [n.network(), n.broadcast()] {
            addrs.push(a);
            match a {
                IpAddr::V4(v) => {
                    addrs.push(std::net::Ipv4Addr::from(u32::from(v).wrapping_add(1)).into());
                    addrs.push(std::net::Ipv4Addr::from(u32::from(v).wrapping_sub(1)).into());
                }
                IpAddr::V6(v) => {
                    addrs.push(std::net::Ipv6Addr::from(u128::from(v).wrapping_add(1)).into());
                    addrs.push(std::net::Ipv6Addr::from(u128::from(v).wrapping_sub(1)).into());
                }
            }
        }
    }
    let ports = [
        0, 1, 21, 22, 23, 25, 53, 442, 443, 444, 1023, 1024, 3306, 5432, 65535,
    ];
    let mut findings = 0;
    for &client in &addrs {
        for &server in &addrs {
            if client.is_ipv4() != server.is_ipv4() {
                continue;
            }
            for (cport, sport) in ports
                .iter()
                .zip(ports.iter().rev())
                .chain(ports.iter().map(|p| (&40000, p)))
            {
                for protocol in [TCP, UDP, 1] {
                    let key = FlowKey {
                        src: client,
                        dst: server,
                        src_port: *cport,
                        dst_port: *sport,
                        protocol,
                    };
                    let (mut by_bits, mut by_paths) = (ArrayVec::new(), ArrayVec::new());
                    c.judge(&session(), key, c.bits(&session(), key), &mut by_bits);
                    c.judge_paths(&session(), key, &mut by_paths);
                    let scopes = |h: &ArrayVec<Hit, MAX_HITS>| -> Vec<(u16, u16)> {
                        h.iter().map(|h| (h.scope, h.path)).collect()
                    };
                    assert_eq!(scopes(&by_bits), scopes(&by_paths), "{key:?}");
                    findings += by_bits.len();
                }
            }
        }
    }
    assert!(findings > 10_000, "the flows hit scopes: {findings}");
}

/// Scopes with more distinct conditions than the bits hold are judged path by path, with the
/// same verdicts.
#[test]
fn too_many_conditions_are_judged_path_by_path() {
    let scopes: Vec<String> = (0..130)
        .map(|i| header(&format!(r#"{{"SourcePorts":["{}"]}}"#, 1000 + i)))
        .collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let c = compiled(&scopes, "");
    assert!(c.conditions.is_none());
    assert_eq!(
        judge(&c, "10.0.1.10:1129", "198.51.100.9:443", TCP),
        &[(129, 0)]
    );
    assert_eq!(judge(&c, "10.0.1.10:1130", "198.51.100.9:443", TCP), MISS);
    let fits = compiled(&scopes[..100], "");
    assert!(fits.conditions.is_some());
    assert_eq!(
        judge(&fits, "10.0.1.10:1099", "198.51.100.9:443", UDP),
        &[(99, 0)]
    );
}
