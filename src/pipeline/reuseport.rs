//! Steering in the kernel: a classic BPF program for an SO_REUSEPORT group of VXLAN sockets that picks
//! the socket by a hash symmetric in the inner flow, so both directions of a flow are received by the
//! same socket, whatever outer source port AWS gave each direction.
//!
//! With it, a receive worker can run the modules on what its socket delivers itself (run-to-completion
//! dispatch) instead of re-steering every packet to shard threads.
//!
//! What the kernel gives the program (net/core/sock_reuseport.c, `run_bpf_filter`): the datagram with
//! its data pulled past the UDP header, so offset 0 is the VXLAN header and `len` is the UDP payload
//! length; the program's return value is the socket's index in bind order, and an index past the
//! group makes the kernel fall back to its own hash, which would split flows. So every path ends in
//! `% n`. A load past the end of the datagram ends a classic program with 0, which is in range too; the
//! program checks lengths first anyway, so that a short inner frame falls back to the VNI rather than
//! to socket 0.
//!
//! The hash covers what the flow key is made of, in an order-independent way for the two endpoints:
//! - always the VNI (a frame that cannot be parsed further goes by the VNI alone);
//! - inner IPv4 (untagged or behind one 802.1Q tag): the sum of the two addresses, the protocol, and
//!   for TCP and UDP the sum of the two ports, but only when the packet is no fragment at all, as in
//!   [`super::steer::symmetric_hash`]: later fragments carry no ports, and this keeps a fragmented
//!   datagram's pieces together;
//! - inner IPv6: the two addresses only. Ports would need the extension header chain walked, and a flow
//!   whose packets differ in extension headers (a fragment header on large ones, hop-by-hop options on
//!   some) would then hash by ports on some packets and not on others, splitting the flow. Addresses
//!   alone are the same on every packet of a flow; the cost is that all flows between one pair of IPv6
//!   hosts (in one VNI) go to one worker.
//!
//! The outer source address (half of the session key) is left out: a flow's packets all come from one
//! mirror source, so leaving it out cannot split a flow, and the program stays independent of the
//! outer address family.

use std::collections::HashMap;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

// Opcode parts (linux/bpf_common.h, linux/filter.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const MSH: u16 = 0xa0;
const ADD: u16 = 0x00;
const MUL: u16 = 0x20;
const RSH: u16 = 0x70;
const MOD: u16 = 0x90;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const X: u16 = 0x08;
const RET_A: u16 = 0x10;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

/// Scratch memory slots of the program.
const HASH: u32 = 0;
const TMP: u32 = 1;

/// Odd multipliers that spread the sums over all 32 bits.
const C_VNI: u32 = 0x9e37_79b1;
const C_ADDR: u32 = 0x85eb_ca6b;
const C_PROTO: u32 = 0xc2b2_ae35;
const C_PORTS: u32 = 0x27d4_eb2f;
const C_FINAL: u32 = 0x1656_67b1;

/// Offsets in the UDP payload: the VXLAN header, then the inner Ethernet header.
const VXLAN_LEN: u32 = 8;
const ETHERTYPE: u32 = VXLAN_LEN + 12;

enum Item {
    Insn(Insn),
    /// A conditional jump to labels ("" = the next instruction).
    Jump {
        code: u16,
        k: u32,
        yes: String,
        no: String,
    },
    Goto(String),
    Label(String),
}

/// A few lines of assembler: forward jumps to named labels, resolved at the end.
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) {
        self.items.push(Item::Insn(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    fn jump(&mut self, code: u16, k: u32, yes: &str, no: &str) {
        self.items.push(Item::Jump {
            code: JMP | code,
            k,
            yes: yes.into(),
            no: no.into(),
        });
    }

    fn goto(&mut self, to: &str) {
        self.items.push(Item::Goto(to.into()));
    }

    fn label(&mut self, name: &str) {
        self.items.push(Item::Label(name.into()));
    }

    /// `A = A*mul + M[HASH]; M[HASH] = A`: folds the value in A into the hash.
    fn fold(&mut self, mul: u32) {
        self.op(ALU | MUL | K, mul);
        self.op(LDX | W | MEM, HASH);
        self.op(ALU | ADD | X, 0);
        self.op(ST, HASH);
    }

    /// Goes on only if the datagram holds at least `bytes`; otherwise to the end with the hash so far.
    fn need(&mut self, bytes: u32) {
        self.op(LD | W | LEN, 0);
        self.jump(JGE | K, bytes, "", "done");
    }

    fn assemble(self) -> Vec<Insn> {
        let mut at = HashMap::new();
        let mut pc = 0usize;
        for item in &self.items {
            match item {
                Item::Label(name) => {
                    at.insert(name.clone(), pc);
                }
                _ => pc += 1,
            }
        }
        let offset = |from: usize, to: &str| -> usize {
            if to.is_empty() {
                return 0;
            }
            // Every label used is defined below its jumps: a programming error otherwise, caught by
            // the unit tests, which assemble every program shape.
            let target = at[to];
            assert!(target > from, "backward jump to {to}");
            target - from - 1
        };
        let mut out = Vec::with_capacity(pc);
        for item in self.items {
            let pc = out.len();
            match item {
                Item::Label(_) => {}
                Item::Insn(i) => out.push(i),
                Item::Jump { code, k, yes, no } => {
                    let (jt, jf) = (offset(pc, &yes), offset(pc, &no));
                    assert!(jt <= 255 && jf <= 255, "jump too far");
                    out.push(Insn {
                        code,
                        jt: jt as u8,
                        jf: jf as u8,
                        k,
                    });
                }
                Item::Goto(to) => out.push(Insn {
                    code: JMP | JA,
                    jt: 0,
                    jf: 0,
                    k: offset(pc, &to) as u32,
                }),
            }
        }
        out
    }
}

/// The program for a group of `sockets` VXLAN sockets (at least 1): returns a socket index below
/// `sockets`, equal for both directions of a flow.
pub fn vxlan_program(sockets: u32) -> Vec<Insn> {
    let sockets = sockets.max(1);
    let mut a = Asm::default();
    a.op(LD | W | IMM, 0);
    a.op(ST, HASH);
    a.need(VXLAN_LEN);
    // VNI: the top three bytes of the second word.
    a.op(LD | W | ABS, 4);
    a.op(ALU | RSH | K, 8);
    a.op(ST, HASH);
    a.need(ETHERTYPE + 2);
    a.op(LD | H | ABS, ETHERTYPE);
    a.jump(JEQ | K, 0x8100, "", "untagged");
    a.need(ETHERTYPE + 6);
    a.op(LD | H | ABS, ETHERTYPE + 4);
    a.jump(JEQ | K, 0x0800, "ipv4_tagged", "");
    a.jump(JEQ | K, 0x86dd, "ipv6_tagged", "done");
    a.label("untagged");
    a.jump(JEQ | K, 0x0800, "ipv4", "");
    a.jump(JEQ | K, 0x86dd, "ipv6", "done");
    ipv4(&mut a, "ipv4", ETHERTYPE + 2);
    ipv4(&mut a, "ipv4_tagged", ETHERTYPE + 6);
    ipv6(&mut a, "ipv6", ETHERTYPE + 2);
    ipv6(&mut a, "ipv6_tagged", ETHERTYPE + 6);
    // Final mix, so that `% sockets` sees well-spread low bits.
    a.label("done");
    a.op(LD | W | MEM, HASH);
    a.op(ALU | MUL | K, C_VNI);
    a.op(MISC | TAX, 0);
    a.op(ALU | RSH | K, 15);
    a.op(ALU | XOR | X, 0);
    a.op(ALU | MUL | K, C_FINAL);
    a.op(MISC | TAX, 0);
    a.op(ALU | RSH | K, 16);
    a.op(ALU | XOR | X, 0);
    a.op(ALU | MOD | K, sockets);
    a.op(RET | RET_A, 0);
    a.assemble()
}

/// Folds an IPv4 header at offset `l3` into the hash; ends in a jump to `done`.
fn ipv4(a: &mut Asm, name: &str, l3: u32) {
    let ports = format!("{name}_ports");
    let has_ports = format!("{name}_has_ports");
    a.label(name);
    a.need(l3 + 20);
    // Source + destination: the same both ways.
    a.op(LD | W | ABS, l3 + 12);
    a.op(MISC | TAX, 0);
    a.op(LD | W | ABS, l3 + 16);
    a.op(ALU | ADD | X, 0);
    a.fold(C_ADDR);
    a.op(LD | B | ABS, l3 + 9);
    a.op(ST, TMP);
    a.fold(C_PROTO);
    // Any fragment (more-fragments set, or an offset) goes without ports.
    a.op(LD | H | ABS, l3 + 6);
    a.jump(JSET | K, 0x3fff, "done", "");
    a.op(LD | W | MEM, TMP);
    a.jump(JEQ | K, 6, &ports, "");
    a.jump(JEQ | K, 17, &ports, "done");
    a.label(&ports);
    // X = header length; the ports must lie within the datagram, after a header of at least 20 bytes.
    a.op(LDX | B | MSH, l3);
    a.op(MISC | TXA, 0);
    a.jump(JGE | K, 20, "", "done");
    a.op(ALU | ADD | K, l3 + 4);
    a.op(MISC | TAX, 0);
    a.op(LD | W | LEN, 0);
    a.jump(JGE | X, 0, &has_ports, "done");
    a.label(&has_ports);
    a.op(LDX | B | MSH, l3);
    a.op(LD | H | IND, l3);
    a.op(ST, TMP);
    a.op(LD | H | IND, l3 + 2);
    a.op(LDX | W | MEM, TMP);
    a.op(ALU | ADD | X, 0);
    a.fold(C_PORTS);
    a.goto("done");
}

/// Folds the addresses of an IPv6 header at offset `l3` into the hash; ends in a jump to `done`.
fn ipv6(a: &mut Asm, name: &str, l3: u32) {
    a.label(name);
    a.need(l3 + 40);
    for word in 0..4 {
        a.op(LD | W | ABS, l3 + 8 + 4 * word);
        a.op(MISC | TAX, 0);
        a.op(LD | W | ABS, l3 + 24 + 4 * word);
        a.op(ALU | ADD | X, 0);
        a.fold(C_ADDR);
    }
    a.goto("done");
}

/// Runs `program` on `payload` as the kernel would (for the subset of classic BPF the programs here
/// use): the socket index it returns. A load out of bounds returns 0, as in the kernel. Only the tests
/// need it: it is how they check the program's symmetry without a kernel.
#[cfg(test)]
fn run(program: &[Insn], payload: &[u8]) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    let load = |at: u32, size: u16| -> Option<u32> {
        let at = at as usize;
        let n = match size {
            W => 4,
            H => 2,
            _ => 1,
        };
        let bytes = payload.get(at..at.checked_add(n)?)?;
        Some(bytes.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b)))
    };
    while let Some(i) = program.get(pc) {
        pc += 1;
        let class = i.code & 0x07;
        let src = if i.code & X != 0 { x } else { i.k };
        match class {
            LD => {
                let size = i.code & 0x18;
                a = match i.code & 0xe0 {
                    IMM => i.k,
                    LEN => payload.len() as u32,
                    MEM => mem[i.k as usize & 15],
                    ABS => match load(i.k, size) {
                        Some(v) => v,
                        None => return 0,
                    },
                    IND => match load(x.wrapping_add(i.k), size) {
                        Some(v) => v,
                        None => return 0,
                    },
                    _ => return 0,
                };
            }
            LDX => {
                x = match i.code & 0xe0 {
                    IMM => i.k,
                    LEN => payload.len() as u32,
                    MEM => mem[i.k as usize & 15],
                    MSH => match load(i.k, B) {
                        Some(v) => 4 * (v & 0xf),
                        None => return 0,
                    },
                    _ => return 0,
                };
            }
            ST => mem[i.k as usize & 15] = a,
            ALU => {
                a = match i.code & 0xf0 {
                    ADD => a.wrapping_add(src),
                    MUL => a.wrapping_mul(src),
                    RSH => a.checked_shr(src).unwrap_or(0),
                    XOR => a ^ src,
                    MOD if src != 0 => a % src,
                    _ => return 0,
                }
            }
            JMP => {
                let taken = match i.code & 0xf0 {
                    JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    JEQ => a == src,
                    JGE => a >= src,
                    JSET => a & src != 0,
                    _ => return 0,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            RET => return if i.code & RET_A != 0 { a } else { i.k },
            MISC => {
                if i.code & TXA != 0 {
                    a = x;
                } else {
                    x = a;
                }
            }
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
        let mut p = vec![0x08, 0, 0, 0];
        p.extend_from_slice(&(vni << 8).to_be_bytes());
        p.extend_from_slice(frame);
        p
    }

    fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 100)
            .write(&mut out, b"data")
            .unwrap();
        out
    }

    fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, b"data")
            .unwrap();
        out
    }

    fn tagged(frame: &[u8], vlan: u16) -> Vec<u8> {
        let mut f = frame[..12].to_vec();
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vlan.to_be_bytes());
        f.extend_from_slice(&frame[12..]);
        f
    }

    #[test]
    fn both_directions_pick_the_same_socket_and_flows_spread() {
        for sockets in [1u32, 2, 3, 4, 7] {
            let prog = vxlan_program(sockets);
            let mut hits = vec![0u32; sockets as usize];
            for i in 0..2000u16 {
                let (a, b) = ([10, 0, (i >> 8) as u8, i as u8], [172, 16, 0, 9]);
                let fwd = vxlan(7, &tcp4(a, 30000 + i, b, 443));
                let rev = vxlan(7, &tcp4(b, 443, a, 30000 + i));
                let s = run(&prog, &fwd);
                assert_eq!(s, run(&prog, &rev), "{sockets} sockets, flow {i}");
                assert_eq!(
                    s,
                    run(&prog, &vxlan(7, &tagged(&tcp4(b, 443, a, 30000 + i), 5))),
                    "one tag shifts the offsets, not the hash"
                );
                hits[s as usize] += 1;
            }
            let fair = 2000 / sockets;
            assert!(
                hits.iter().all(|&h| h > fair * 3 / 4),
                "{sockets}: {hits:?}"
            );
        }
    }

    #[test]
    fn ports_alone_and_ipv6_addresses_spread() {
        let prog = vxlan_program(4);
        let mut by_port = [0u32; 4];
        let mut by_v6 = [0u32; 4];
        for i in 0..4000u16 {
            let fwd = tcp4([10, 0, 0, 1], 1024 + i, [10, 0, 0, 2], 443);
            by_port[run(&prog, &vxlan(1, &fwd)) as usize] += 1;
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[14..].copy_from_slice(&i.to_be_bytes());
            let mut b = [0u8; 16];
            b[0] = 0xfd;
            b[15] = 1;
            let f = run(&prog, &vxlan(1, &udp6(a, 5353, b, 53)));
            assert_eq!(f, run(&prog, &vxlan(1, &udp6(b, 53, a, 5353))));
            // IPv6 goes by addresses only: another port pair of the same hosts lands alike.
            assert_eq!(f, run(&prog, &vxlan(1, &udp6(a, 1, b, 2))));
            by_v6[f as usize] += 1;
        }
        assert!(by_port.iter().all(|&h| h > 750), "{by_port:?}");
        assert!(by_v6.iter().all(|&h| h > 750), "{by_v6:?}");
    }

    #[test]
    fn fragments_go_by_addresses_and_anything_unparsable_stays_in_range() {
        let prog = vxlan_program(3);
        let whole = tcp4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
        let mut first = whole.clone();
        first[14 + 6] = 0x20; // more fragments
        let mut later = tcp4([10, 0, 0, 1], 9, [10, 0, 0, 2], 9);
        later[14 + 7] = 0x10; // offset, ports not readable
        let mut later_rev = tcp4([10, 0, 0, 2], 7, [10, 0, 0, 1], 8);
        later_rev[14 + 7] = 0x10;
        assert_eq!(run(&prog, &vxlan(3, &first)), run(&prog, &vxlan(3, &later)));
        assert_eq!(
            run(&prog, &vxlan(3, &later)),
            run(&prog, &vxlan(3, &later_rev))
        );
        // Every cut of a frame, and garbage, maps into the group, deterministically.
        let full = vxlan(3, &tagged(&whole, 9));
        for cut in 0..=full.len() {
            let s = run(&prog, &full[..cut]);
            assert!(s < 3);
            assert_eq!(s, run(&prog, &full[..cut]));
        }
        for seed in 0..500u32 {
            let junk: Vec<u8> = (0..seed % 90)
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 77) >> 7) as u8)
                .collect();
            assert!(run(&prog, &junk) < 3);
        }
        // A frame that is no IP is steered by its VNI.
        let mut arp = whole.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut arp2 = tcp4([1, 2, 3, 4], 5, [6, 7, 8, 9], 10);
        arp2[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(&prog, &vxlan(9, &arp)), run(&prog, &vxlan(9, &arp2)));
    }

    #[test]
    fn programs_are_within_the_kernels_limits() {
        for n in [1, 2, 64, 65535] {
            let p = vxlan_program(n);
            // BPF_MAXINSNS is 4096; the kernel also rejects a MOD by zero.
            assert!(p.len() < 256);
            assert!(p.iter().any(|i| i.code == ALU | MOD | K && i.k == n));
        }
    }
}
