//! The `settings!` macro: a plain serde config struct whose every field has a default, so config
//! files name only what they change, with a `new()` and a `with_<field>` builder method per field.

/// Declares a config struct: `name: Type = default` per field.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty ),*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default ),* }
            }
        }

        impl $name {
            /// The defaults.
            pub fn new() -> Self {
                Self::default()
            }

            paste::paste! {
                $(
                    #[doc = concat!("Sets `", stringify!($field), "`.")]
                    pub fn [<with_ $field>](mut self, value: $ty) -> Self {
                        self.$field = value;
                        self
                    }
                )*
            }
        }
    };
}

pub(crate) use settings;
