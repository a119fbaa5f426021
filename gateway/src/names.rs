//! Cloud Bigtable resource names: `projects/P/instances/I` (an instance, the parent of tables)
//! and `projects/P/instances/I/tables/T`. Any project and instance are accepted, as Google's
//! emulator does: a Tabula cluster is one instance, and a table's Tabula name is `T`. Pure.

use tabula_common::Error;

/// The parts of an instance name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// `P`.
    pub(crate) project: String,
    /// `I`.
    pub(crate) instance: String,
}

impl Instance {
    /// `projects/P/instances/I`.
    pub(crate) fn parse(field: &str, name: &str) -> Result<Instance, Error> {
        match name.split('/').collect::<Vec<_>>()[..] {
            ["projects", project, "instances", instance]
                if !project.is_empty() && !instance.is_empty() =>
            {
                Ok(Instance {
                    project: project.to_owned(),
                    instance: instance.to_owned(),
                })
            }
            _ => Err(Error::invalid_argument(format!(
                "{field}: {name:?} is not an instance name: want projects/PROJECT/instances/INSTANCE"
            ))),
        }
    }

    /// `projects/P/instances/I`.
    pub(crate) fn name(&self) -> String {
        format!("projects/{}/instances/{}", self.project, self.instance)
    }

    /// The full name of table `table` of this instance.
    pub(crate) fn table_name(&self, table: &str) -> String {
        format!("{}/tables/{table}", self.name())
    }
}

/// A table name split into its instance and the Tabula table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    /// The instance it names.
    pub(crate) instance: Instance,
    /// `T`: the table's name in Tabula.
    pub(crate) table: String,
}

impl TableName {
    /// `projects/P/instances/I/tables/T`.
    pub(crate) fn parse(field: &str, name: &str) -> Result<TableName, Error> {
        match name.split('/').collect::<Vec<_>>()[..] {
            ["projects", project, "instances", instance, "tables", table]
                if !project.is_empty() && !instance.is_empty() && !table.is_empty() =>
            {
                Ok(TableName {
                    instance: Instance {
                        project: project.to_owned(),
                        instance: instance.to_owned(),
                    },
                    table: table.to_owned(),
                })
            }
            _ => Err(Error::invalid_argument(format!(
                "{field}: {name:?} is not a table name: want \
                 projects/PROJECT/instances/INSTANCE/tables/TABLE"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tabula_common::Code;

    #[test]
    fn table_names_parse_with_any_project_and_instance() {
        let t = TableName::parse("table_name", "projects/p-1/instances/i/tables/users").unwrap();
        assert_eq!(t.table, "users");
        assert_eq!(t.instance.project, "p-1");
        assert_eq!(
            t.instance.table_name(&t.table),
            "projects/p-1/instances/i/tables/users"
        );
        for bad in [
            "",
            "users",
            "projects/p/instances/i",
            "projects/p/instances/i/tables/",
            "projects//instances/i/tables/t",
            "projects/p/instances/i/tables/t/x",
            "project/p/instances/i/tables/t",
        ] {
            let e = TableName::parse("table_name", bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{bad}");
            assert!(e.message.starts_with("table_name: "), "{}", e.message);
        }
    }

    #[test]
    fn instance_names_parse() {
        let i = Instance::parse("parent", "projects/p/instances/i").unwrap();
        assert_eq!(i.table_name("t"), "projects/p/instances/i/tables/t");
        assert!(Instance::parse("parent", "projects/p/instances/i/tables/t").is_err());
        assert!(Instance::parse("parent", "projects/p").is_err());
    }
}
