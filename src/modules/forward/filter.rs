//! The inner-packet filter of a forward output: a small, documented subset of the pcap filter
//! language, compiled once at config time into a tree that is evaluated on the dissected [`Layers`]
//! (no bytes are re-parsed, nothing is allocated per packet).
//!
//! No pure-Rust crate that compiles the classic syntax was both well kept and widely used when this
//! was written, and libpcap through FFI would add a C library to a daemon that otherwise has none, so
//! vxtap implements the part users write in practice:
//!
//! ```text
//! expr      = and ( ("or" | "||") and )*
//! and       = unary ( ("and" | "&&") unary )*
//! unary     = ("not" | "!") unary | "(" expr ")" | primitive
//! primitive = proto [ [dir] ("port" N | "portrange" N-M) ]
//!           | [dir] ("host" ADDR | "net" CIDR | "port" N | "portrange" N-M)
//! proto     = "ip" | "ip6" | "tcp" | "udp" | "icmp" | "icmp6" | "proto" N
//! dir       = "src" | "dst"
//! ```
//!
//! `tcp port 443` means `tcp and port 443`, as in libpcap. Ports match TCP and UDP only, and, as in
//! libpcap, never a later IP fragment (it carries no ports). Nesting is capped at 32 levels so that no
//! input can exhaust the stack. Errors name the column (from 1) of the offending word.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::wire::inner::Layers;

/// Direction qualifier: which address or port a primitive looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Either,
    Src,
    Dst,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Any,
    Ipv4,
    Ipv6,
    Proto(u8),
    Net(Dir, IpNet),
    Ports(Dir, u16, u16),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

/// A compiled filter. The empty filter selects everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter(Node);

const MAX_DEPTH: usize = 32;

impl Filter {
    /// Compiles `text`; the error names the column where it went wrong.
    pub(crate) fn compile(text: &str) -> Result<Filter, String> {
        let tokens = tokenize(text);
        if tokens.is_empty() {
            return Ok(Filter(Node::Any));
        }
        let mut p = Parser {
            tokens,
            at: 0,
            end: text.chars().count() + 1,
        };
        let node = p.expr(0)?;
        match p.peek() {
            None => Ok(Filter(node)),
            Some((col, word)) => Err(format!(
                "at column {col}: unexpected {word:?} (expected \"and\", \"or\" or the end)"
            )),
        }
    }

    /// Whether a packet with these layers is selected.
    #[inline]
    pub(crate) fn matches(&self, layers: &Layers) -> bool {
        eval(&self.0, layers)
    }

    /// Whether the filter selects everything (the packet path then skips it).
    pub(crate) fn is_any(&self) -> bool {
        self.0 == Node::Any
    }
}

fn eval(node: &Node, l: &Layers) -> bool {
    match node {
        Node::Any => true,
        Node::Ipv4 => l.ip.is_some_and(|ip| ip.src.is_ipv4()),
        Node::Ipv6 => l.ip.is_some_and(|ip| ip.src.is_ipv6()),
        Node::Proto(p) => l.ip.is_some_and(|ip| ip.protocol == *p),
        Node::Net(dir, net) => l.ip.is_some_and(|ip| match dir {
            Dir::Src => net.contains(&ip.src),
            Dir::Dst => net.contains(&ip.dst),
            Dir::Either => net.contains(&ip.src) || net.contains(&ip.dst),
        }),
        Node::Ports(dir, lo, hi) => l.transport.ports().is_some_and(|(s, d)| {
            let hit = |p: u16| (*lo..=*hi).contains(&p);
            match dir {
                Dir::Src => hit(s),
                Dir::Dst => hit(d),
                Dir::Either => hit(s) || hit(d),
            }
        }),
        Node::Not(n) => !eval(n, l),
        Node::And(a, b) => eval(a, l) && eval(b, l),
        Node::Or(a, b) => eval(a, l) || eval(b, l),
    }
}

/// Words with their 1-based column; parentheses and `!` are words of their own.
fn tokenize(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut word: Option<(usize, String)> = None;
    for (i, c) in text.chars().enumerate() {
        let col = i + 1;
        if c.is_whitespace() || matches!(c, '(' | ')' | '!') {
            out.extend(word.take());
            if !c.is_whitespace() {
                out.push((col, c.to_string()));
            }
        } else {
            word.get_or_insert_with(|| (col, String::new())).1.push(c);
        }
    }
    out.extend(word);
    out
}

struct Parser {
    tokens: Vec<(usize, String)>,
    at: usize,
    /// The column just past the text, for "expected more" errors.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<(usize, &str)> {
        self.tokens.get(self.at).map(|(c, w)| (*c, w.as_str()))
    }

    fn next(&mut self, what: &str) -> Result<(usize, String), String> {
        match self.tokens.get(self.at) {
            Some(t) => {
                self.at += 1;
                Ok(t.clone())
            }
            None => Err(format!("at column {}: expected {what}", self.end)),
        }
    }

    fn eat(&mut self, words: &[&str]) -> bool {
        if self.peek().is_some_and(|(_, w)| words.contains(&w)) {
            self.at += 1;
            return true;
        }
        false
    }

    fn expr(&mut self, depth: usize) -> Result<Node, String> {
        let mut left = self.and(depth)?;
        while self.eat(&["or", "||"]) {
            left = Node::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Node, String> {
        let mut left = self.unary(depth)?;
        while self.eat(&["and", "&&"]) {
            left = Node::And(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Node, String> {
        let Some((col, word)) = self.peek() else {
            return Err(format!("at column {}: expected a primitive", self.end));
        };
        if depth >= MAX_DEPTH {
            return Err(format!(
                "at column {col}: nested more than {MAX_DEPTH} deep"
            ));
        }
        match word {
            "not" | "!" => {
                self.at += 1;
                Ok(Node::Not(Box::new(self.unary(depth + 1)?)))
            }
            "(" => {
                self.at += 1;
                let inner = self.expr(depth + 1)?;
                match self.next("\")\"")? {
                    (_, w) if w == ")" => Ok(inner),
                    (col, w) => Err(format!("at column {col}: expected \")\", found {w:?}")),
                }
            }
            _ => self.primitive(),
        }
    }

    fn primitive(&mut self) -> Result<Node, String> {
        let (col, word) = self.next("a primitive")?;
        let proto = match word.as_str() {
            "ip" => Some(Node::Ipv4),
            "ip6" => Some(Node::Ipv6),
            "tcp" => Some(Node::Proto(6)),
            "udp" => Some(Node::Proto(17)),
            "icmp" => Some(Node::Proto(1)),
            "icmp6" => Some(Node::Proto(58)),
            "proto" => {
                let (c, n) = self.next("a protocol number")?;
                let n = n
                    .parse::<u8>()
                    .map_err(|_| format!("at column {c}: {n:?} is not a protocol number 0-255"))?;
                Some(Node::Proto(n))
            }
            _ => None,
        };
        if let Some(proto) = proto {
            // `tcp port 443`, `udp src port 53`: a protocol qualifying a port primitive.
            let qualifies = match self.peek() {
                Some((_, "port" | "portrange")) => true,
                Some((_, "src" | "dst")) => self
                    .tokens
                    .get(self.at + 1)
                    .is_some_and(|(_, w)| w == "port" || w == "portrange"),
                _ => false,
            };
            if !qualifies {
                return Ok(proto);
            }
            let (c, w) = self.next("a primitive")?;
            let ports = self.qualified(c, &w)?;
            return Ok(Node::And(Box::new(proto), Box::new(ports)));
        }
        self.qualified(col, &word)
    }

    /// `[src|dst] host|net|port|portrange VALUE`, starting at the word already read.
    fn qualified(&mut self, col: usize, word: &str) -> Result<Node, String> {
        let (dir, col, word) = match word {
            "src" | "dst" => {
                let (c, w) = self.next("\"host\", \"net\", \"port\" or \"portrange\"")?;
                let dir = if word == "src" { Dir::Src } else { Dir::Dst };
                (dir, c, w)
            }
            _ => (Dir::Either, col, word.to_owned()),
        };
        match word.as_str() {
            "host" => {
                let (c, v) = self.next("an address")?;
                let addr: IpAddr = v
                    .parse()
                    .map_err(|_| format!("at column {c}: {v:?} is not an IP address"))?;
                Ok(Node::Net(dir, IpNet::from(addr)))
            }
            "net" => {
                let (c, v) = self.next("a CIDR")?;
                let net: IpNet = v.parse().map_err(|_| {
                    format!("at column {c}: {v:?} is not a CIDR such as 10.0.0.0/8")
                })?;
                Ok(Node::Net(dir, net.trunc()))
            }
            "port" => {
                let (c, v) = self.next("a port")?;
                let p = port(c, &v)?;
                Ok(Node::Ports(dir, p, p))
            }
            "portrange" => {
                let (c, v) = self.next("a port range N-M")?;
                let (a, b) = v
                    .split_once('-')
                    .ok_or_else(|| format!("at column {c}: {v:?} is not a range N-M"))?;
                let (a, b) = (port(c, a)?, port(c, b)?);
                if a > b {
                    return Err(format!("at column {c}: range {v:?} is empty"));
                }
                Ok(Node::Ports(dir, a, b))
            }
            other => Err(format!(
                "at column {col}: unknown word {other:?} (this subset knows ip, ip6, tcp, udp, \
                 icmp, icmp6, proto, src, dst, host, net, port, portrange, and, or, not)"
            )),
        }
    }
}

fn port(col: usize, v: &str) -> Result<u16, String> {
    v.parse()
        .map_err(|_| format!("at column {col}: {v:?} is not a port 0-65535"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::inner::dissect;
    use etherparse::PacketBuilder;

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 0, 100)
            .write(&mut out, &[])
            .unwrap();
        out
    }

    fn udp6(sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(sport, dport)
            .write(&mut out, &[1, 2])
            .unwrap();
        out
    }

    fn hit(f: &str, frame: &[u8]) -> bool {
        Filter::compile(f).unwrap().matches(&dissect(frame))
    }

    #[test]
    fn primitives_and_combinations() {
        let https = tcp([10, 0, 0, 1], 40000, [10, 9, 0, 2], 443);
        let dns6 = udp6(5353, 53);
        assert!(hit("", &https) && Filter::compile("  ").unwrap().is_any());
        assert!(hit("tcp port 443", &https));
        assert!(!hit("tcp port 443", &dns6));
        assert!(hit("udp dst port 53 and ip6", &dns6));
        assert!(!hit("udp src port 53", &dns6));
        assert!(hit("src host 10.0.0.1 && dst net 10.9.0.0/16", &https));
        assert!(!hit("dst host 10.0.0.1", &https));
        assert!(hit("not (udp or icmp)", &https));
        assert!(hit("!udp", &https));
        assert!(hit("portrange 400-500 and ip", &https));
        assert!(hit("proto 17 or tcp and port 1", &dns6));
        assert!(hit("net fd00::/8", &dns6));
        assert!(!hit("port 443", &[0u8; 20]));
    }

    #[test]
    fn errors_name_the_column() {
        let err = |f: &str| Filter::compile(f).unwrap_err();
        assert_eq!(
            err("tcp port http"),
            "at column 10: \"http\" is not a port 0-65535"
        );
        assert!(
            err("tcp and").starts_with("at column 8: expected"),
            "{}",
            err("tcp and")
        );
        assert!(err("(tcp").starts_with("at column 5: expected \")\""));
        assert!(err("host 10.0.0.256").starts_with("at column 6:"));
        assert!(err("tcp udp").starts_with("at column 5: unexpected \"udp\""));
        assert!(err("ether host 1").starts_with("at column 1: unknown word \"ether\""));
        assert!(err("portrange 9-1").contains("empty"));
        let deep = format!("{}tcp{}", "(".repeat(100), ")".repeat(100));
        assert!(err(&deep).contains("nested more than 32"));
        let nots = format!("{}tcp", "not ".repeat(100));
        assert!(err(&nots).contains("nested"));
    }
}
