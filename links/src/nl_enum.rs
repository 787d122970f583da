//! One table for an enum that mirrors a netlink-packet-route enum.

/// Writes the three mappings of a podnet enum that mirrors a netlink-packet-route enum from
/// one table, a row per variant (`Ours => Theirs, "iproute2's word";`):
///
/// - `to_nl`: to theirs; `Other(n)` through `$to_other`;
/// - `from_nl`: from theirs; the rows, then the `also` pairs (more of their values that mean
///   one of ours), and any other value kept as `Other` with its number;
/// - `Display`: iproute2's word; `Other(n)` with the format `$fmt`.
macro_rules! nl_enum {
    (
        $ours:ident <=> $theirs:ident, other: $raw:ty => $to_other:path, shown $fmt:literal
        $(, also [$($extra:ident => $extra_to:ident),+])?;
        $($o:ident => $t:ident, $word:literal;)+
    ) => {
        impl $ours {
            pub(crate) fn to_nl(self) -> $theirs {
                match self {
                    $($ours::$o => $theirs::$t,)+
                    $ours::Other(n) => $to_other(n),
                }
            }

            pub(crate) fn from_nl(v: $theirs) -> $ours {
                match v {
                    $($theirs::$t => $ours::$o,)+
                    $($($theirs::$extra => $ours::$extra_to,)+)?
                    other => $ours::Other(<$raw>::from(other)),
                }
            }
        }

        impl ::std::fmt::Display for $ours {
            /// As iproute2 prints it.
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $($ours::$o => f.write_str($word),)+
                    $ours::Other(n) => write!(f, $fmt, n),
                }
            }
        }
    };
}
pub(crate) use nl_enum;
