//! Where a value sits in a request (`entries[3].mutations[7].set_cell.value`), for the
//! messages of the errors that name it. A path is built on the stack as a request is checked
//! and turned into text only when an error is reported: building the strings eagerly cost an
//! allocation and a `format!` per mutation, and another per family check, on every write.

use std::fmt;

/// A field of a request: a top-level name, an element of a list, or a member of a message.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field<'a> {
    /// A field of the request itself (`mutations`, `entries[2].mutations`).
    Name(&'a str),
    /// The element at an index of a repeated field.
    Index(&'a Field<'a>, usize),
    /// A member of a message field.
    Member(&'a Field<'a>, &'static str),
}

impl Field<'_> {
    /// The element at `index` of this repeated field.
    pub(super) fn at(&self, index: usize) -> Field<'_> {
        Field::Index(self, index)
    }

    /// The member `name` of this message field.
    pub(super) fn member(&self, name: &'static str) -> Field<'_> {
        Field::Member(self, name)
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Name(name) => f.write_str(name),
            Field::Index(list, index) => write!(f, "{list}[{index}]"),
            Field::Member(message, name) => write!(f, "{message}.{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_the_request_names_them() {
        let entries = Field::Name("entries");
        let entry = entries.at(3);
        let mutations = entry.member("mutations");
        let mutation = mutations.at(7);
        let value = mutation.member("set_cell").member("value").to_string();
        assert_eq!(value, "entries[3].mutations[7].set_cell.value");
        assert_eq!(Field::Name("mutations").at(0).to_string(), "mutations[0]");
    }
}
