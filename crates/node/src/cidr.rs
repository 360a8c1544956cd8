//! IPv4 networks in CIDR notation (`10.88.3.0/24`): the node's pod network.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::Error;

/// An IPv4 network; the address is normalised to the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network containing `addr` with `prefix` bits (`prefix` at most 32).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        let network = Ipv4Addr::from(u32::from(addr) & Self::mask_bits(prefix));
        Some(Self { network, prefix })
    }

    fn mask_bits(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is inside this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask_bits(self.prefix) == u32::from(self.network)
    }

    /// The first host address: the bridge (gateway) of a pod network.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).saturating_add(1))
    }

    /// Addresses for pods: every host address after the gateway, without the broadcast address.
    pub fn pod_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network).saturating_add(2);
        let size = 1u64 << (32 - u32::from(self.prefix));
        let last = (u64::from(u32::from(self.network)) + size).saturating_sub(2);
        (u64::from(first)..=last).filter_map(|a| u32::try_from(a).ok().map(Ipv4Addr::from))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| Error::Invalid {
            what: "CIDR",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| invalid("expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("prefix is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(invalid("prefix must be between 8 and 30"));
        }
        Self::new(addr, prefix).ok_or_else(|| invalid("prefix too long"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_normalises_to_the_network_address() {
        let c: Ipv4Cidr = "10.88.3.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.88.3.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 88, 3, 1));
        assert!(c.contains(Ipv4Addr::new(10, 88, 3, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 88, 4, 1)));
    }

    #[test]
    fn pod_addresses_skip_network_gateway_and_broadcast() {
        let c: Ipv4Cidr = "10.88.3.0/29".parse().unwrap();
        let all: Vec<_> = c.pod_addresses().map(|a| a.to_string()).collect();
        assert_eq!(
            all,
            [
                "10.88.3.2",
                "10.88.3.3",
                "10.88.3.4",
                "10.88.3.5",
                "10.88.3.6"
            ]
        );
    }

    #[test]
    fn bad_cidrs_say_what_is_wrong() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/x",
            "nope/24",
            "10.0.0.0/31",
            "10.0.0.0/4",
        ] {
            let err = bad.parse::<Ipv4Cidr>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
