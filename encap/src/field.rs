//! Byte-range helpers shared by the packet views.
//!
//! Views call these only on ranges their `new_checked` has proven in bounds.
#![forbid(unsafe_code)]

pub(crate) type Field = core::ops::Range<usize>;

/// Declares a packet view as smoltcp's `wire` types do: the struct over a buffer, and its
/// `new_unchecked`, `new_checked` (which runs the view's own `check_len`, so that no accessor
/// can panic afterwards) and `into_inner`. The first attributes document the struct; those
/// after `checked:` document `new_checked`. With `header: layer, length;` it also writes the
/// `check_len` of a view whose header has a fixed length.
macro_rules! packet_view {
    // A view whose only check is a fixed-length header (`header: layer, length`).
    ($(#[$attr:meta])* $name:ident; header: $layer:expr, $len:expr; checked: $(#[$checked:meta])*) => {
        $crate::field::packet_view! { $(#[$attr])* $name; checked: $(#[$checked])* }

        impl<T: AsRef<[u8]>> $name<T> {
            /// The checks of `new_checked`: the buffer holds the whole header.
            pub fn check_len(&self) -> crate::error::Result<()> {
                crate::error::need($layer, $len, self.buffer.as_ref().len())
            }
        }
    };
    ($(#[$attr:meta])* $name:ident; checked: $(#[$checked:meta])*) => {
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps a buffer without checking it; accessors may panic on a short buffer.
            /// Use it to emit into a buffer of `Repr::buffer_len` bytes.
            pub const fn new_unchecked(buffer: T) -> $name<T> {
                $name { buffer }
            }

            $(#[$checked])*
            pub fn new_checked(buffer: T) -> crate::error::Result<$name<T>> {
                let view = $name { buffer };
                view.check_len()?;
                Ok(view)
            }

            /// Returns the underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}
pub(crate) use packet_view;

#[inline(always)]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub(crate) fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn get_array<const N: usize>(b: &[u8], f: Field) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[f]);
    out
}
