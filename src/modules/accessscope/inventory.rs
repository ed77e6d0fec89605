//! What the peers of a mirrored ENI are: the output of `aws ec2 describe-network-interfaces`, read
//! as is (`{"NetworkInterfaces": [...]}`), turned into address → ENI, instance, subnet, VPC and
//! security groups. Only the fields named here are read; AWS's output has many more, and new ones
//! appear, so unknown keys are ignored (unlike in scope documents, where they would change meaning).

use std::net::IpAddr;
use std::path::Path;

use rustc_hash::FxHashMap;
use serde::Deserialize;

/// One network interface of the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Interface {
    pub(crate) eni: Option<String>,
    pub(crate) instance: Option<String>,
    pub(crate) subnet: Option<String>,
    pub(crate) vpc: Option<String>,
    pub(crate) groups: Vec<String>,
}

/// Interfaces by address and by ENI id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inventory {
    interfaces: Vec<Interface>,
    by_addr: FxHashMap<IpAddr, u32>,
    by_eni: FxHashMap<String, u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Output {
    network_interfaces: Vec<NetworkInterface>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkInterface {
    network_interface_id: Option<String>,
    subnet_id: Option<String>,
    vpc_id: Option<String>,
    attachment: Option<Attachment>,
    #[serde(default)]
    groups: Vec<Group>,
    private_ip_address: Option<IpAddr>,
    #[serde(default)]
    private_ip_addresses: Vec<PrivateIp>,
    #[serde(default)]
    ipv6_addresses: Vec<Ipv6>,
    association: Option<Association>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attachment {
    instance_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Group {
    group_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PrivateIp {
    private_ip_address: Option<IpAddr>,
    association: Option<Association>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Ipv6 {
    ipv6_address: Option<IpAddr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Association {
    public_ip: Option<IpAddr>,
}

impl Inventory {
    /// Reads `describe-network-interfaces` output; errors name the file and the JSON path.
    pub(crate) fn load(file: &Path) -> Result<Inventory, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("inventory {}: cannot read: {e}", file.display()))?;
        Inventory::parse(&text).map_err(|e| format!("inventory {}: {e}", file.display()))
    }

    pub(crate) fn parse(text: &str) -> Result<Inventory, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let out: Output = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.inner())
        })?;
        let mut inv = Inventory::default();
        for ni in out.network_interfaces {
            let i = inv.interfaces.len() as u32;
            let mut addrs: Vec<IpAddr> = ni.private_ip_address.into_iter().collect();
            for p in &ni.private_ip_addresses {
                addrs.extend(p.private_ip_address);
                addrs.extend(p.association.as_ref().and_then(|a| a.public_ip));
            }
            addrs.extend(ni.ipv6_addresses.iter().filter_map(|a| a.ipv6_address));
            addrs.extend(ni.association.as_ref().and_then(|a| a.public_ip));
            for a in addrs {
                // The first interface to claim an address keeps it: AWS gives one address to one
                // interface, so a second claim is a stale file, not a second owner.
                inv.by_addr.entry(a).or_insert(i);
            }
            if let Some(eni) = &ni.network_interface_id {
                inv.by_eni.entry(eni.clone()).or_insert(i);
            }
            inv.interfaces.push(Interface {
                eni: ni.network_interface_id,
                instance: ni.attachment.and_then(|a| a.instance_id),
                subnet: ni.subnet_id,
                vpc: ni.vpc_id,
                groups: ni.groups.into_iter().map(|g| g.group_id).collect(),
            });
        }
        Ok(inv)
    }

    pub(crate) fn by_addr(&self, addr: IpAddr) -> Option<&Interface> {
        if self.by_addr.is_empty() {
            return None;
        }
        let i = *self.by_addr.get(&addr.to_canonical())?;
        self.interfaces.get(i as usize)
    }

    pub(crate) fn by_eni(&self, eni: &str) -> Option<&Interface> {
        if self.by_eni.is_empty() {
            return None;
        }
        let i = *self.by_eni.get(eni)?;
        self.interfaces.get(i as usize)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.interfaces.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_describe_network_interfaces_output() {
        let inv = Inventory::parse(
            r#"{"NetworkInterfaces":[{"NetworkInterfaceId":"eni-0db","SubnetId":"subnet-0a","VpcId":"vpc-01",
              "Attachment":{"InstanceId":"i-0db","DeviceIndex":0},"Groups":[{"GroupId":"sg-0db","GroupName":"db"}],
              "PrivateIpAddress":"10.0.2.20","PrivateIpAddresses":[{"Primary":true,"PrivateIpAddress":"10.0.2.20"},
              {"Primary":false,"PrivateIpAddress":"10.0.2.21","Association":{"PublicIp":"198.51.100.21"}}],
              "Ipv6Addresses":[{"Ipv6Address":"2001:db8::20"}],"InterfaceType":"interface","TagSet":[]}]}"#,
        )
        .unwrap();
        assert_eq!(inv.len(), 1);
        for a in ["10.0.2.20", "10.0.2.21", "198.51.100.21", "2001:db8::20"] {
            let i = inv.by_addr(a.parse().unwrap()).unwrap();
            assert_eq!(i.instance.as_deref(), Some("i-0db"), "{a}");
            assert_eq!(i.groups, ["sg-0db"]);
        }
        assert!(inv.by_addr("10.0.2.22".parse().unwrap()).is_none());
        assert_eq!(
            inv.by_eni("eni-0db").unwrap().vpc.as_deref(),
            Some("vpc-01")
        );
        let e = Inventory::parse(r#"{"NetworkInterfaces":[{"PrivateIpAddress":"10.0.2.999"}]}"#)
            .unwrap_err();
        assert!(
            e.starts_with("NetworkInterfaces[0].PrivateIpAddress: "),
            "{e}"
        );
    }
}
