//! Scopes, shared by addresses and routes.

use std::fmt;

/// An address or route scope (`scope global`, `scope link`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// RT_SCOPE_UNIVERSE, shown as `global`.
    #[default]
    Universe,
    /// RT_SCOPE_SITE.
    Site,
    /// RT_SCOPE_LINK.
    Link,
    /// RT_SCOPE_HOST.
    Host,
    /// RT_SCOPE_NOWHERE.
    Nowhere,
    /// Any other value.
    Other(u8),
}

impl Scope {
    /// The kernel's number.
    pub fn to_u8(self) -> u8 {
        match self {
            Scope::Universe => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
            Scope::Other(n) => n,
        }
    }

    /// From the kernel's number.
    pub fn from_u8(n: u8) -> Scope {
        match n {
            0 => Scope::Universe,
            200 => Scope::Site,
            253 => Scope::Link,
            254 => Scope::Host,
            255 => Scope::Nowhere,
            n => Scope::Other(n),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Universe => f.write_str("global"),
            Scope::Site => f.write_str("site"),
            Scope::Link => f.write_str("link"),
            Scope::Host => f.write_str("host"),
            Scope::Nowhere => f.write_str("nowhere"),
            Scope::Other(n) => write!(f, "{n}"),
        }
    }
}
