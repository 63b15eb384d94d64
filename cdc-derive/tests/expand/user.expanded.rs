///Typed changes of table `users`, as [`User`] values.
pub type UserChange = ::cdc::TypedChange<User>;
const _: () = {
    impl ::cdc::Cdc for User {
        const TABLE: ::cdc::TableDesc = ::cdc::TableDesc {
            name: ::cdc::__private::Cow::Borrowed("users"),
            columns: ::cdc::__private::Cow::Borrowed(
                &[
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("id"),
                        decl_type: ::cdc::__private::Cow::Borrowed("INTEGER"),
                        primary_key: 1u16,
                        not_null: true,
                        generated: false,
                    },
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("name"),
                        decl_type: ::cdc::__private::Cow::Borrowed("TEXT"),
                        primary_key: 0u16,
                        not_null: true,
                        generated: false,
                    },
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("email"),
                        decl_type: ::cdc::__private::Cow::Borrowed("TEXT"),
                        primary_key: 0u16,
                        not_null: false,
                        generated: false,
                    },
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("score"),
                        decl_type: ::cdc::__private::Cow::Borrowed("REAL"),
                        primary_key: 0u16,
                        not_null: true,
                        generated: false,
                    },
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("avatar"),
                        decl_type: ::cdc::__private::Cow::Borrowed("BLOB"),
                        primary_key: 0u16,
                        not_null: true,
                        generated: false,
                    },
                ],
            ),
            without_rowid: false,
            integer_key_not_rowid: false,
        };
        const CREATE_TRIGGERS: [&'static str; 3] = [
            "CREATE TRIGGER \"_cdc_insert_users\" AFTER INSERT ON \"users\" FOR EACH ROW BEGIN\n  INSERT INTO \"_cdc_log\"(kind, v0, v1, v2, v3, v4) VALUES(74725955447841, NEW.\"id\", NEW.\"name\", NEW.\"email\", NEW.\"score\", NEW.\"avatar\");\nEND",
            "CREATE TRIGGER \"_cdc_update_users\" AFTER UPDATE ON \"users\" FOR EACH ROW BEGIN\n  INSERT INTO \"_cdc_log\"(kind, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9) SELECT CASE WHEN \"users\".rowid IS NULL THEN 74725955447843 ELSE 74725955447842 END, OLD.\"id\", OLD.\"name\", OLD.\"email\", OLD.\"score\", OLD.\"avatar\", \"users\".\"id\", \"users\".\"name\", \"users\".\"email\", \"users\".\"score\", \"users\".\"avatar\" FROM (SELECT 1) LEFT JOIN \"users\" ON \"users\".rowid = NEW.rowid;\nEND",
            "CREATE TRIGGER \"_cdc_delete_users\" AFTER DELETE ON \"users\" FOR EACH ROW BEGIN\n  INSERT INTO \"_cdc_log\"(kind, v0, v1, v2, v3, v4) VALUES(74725955447843, OLD.\"id\", OLD.\"name\", OLD.\"email\", OLD.\"score\", OLD.\"avatar\");\nEND",
        ];
        const RUST_TYPE: &'static str = "User";
        fn to_row(&self) -> ::cdc::Result<::cdc::__private::Vec<::cdc::Value>> {
            ::cdc::__private::Ok(
                ::cdc::__private::Vec::from([
                    ::cdc::Value::from_sql(&self.id, "id")?,
                    ::cdc::Value::from_sql(&self.name, "name")?,
                    ::cdc::Value::from_sql(&self.email, "email")?,
                    ::cdc::Value::from_sql(&self.rating, "score")?,
                    ::cdc::Value::from_sql(&self.avatar, "avatar")?,
                ]),
            )
        }
        fn from_row(values: &[::cdc::Value]) -> ::cdc::Result<Self> {
            if values.len() != 5usize {
                return ::cdc::__private::Err(::cdc::Error::Convert {
                    column: ::cdc::__private::String::from("users"),
                    problem: ::cdc::__private::format!(
                        "expected {} values, got {}", 5usize, values.len()
                    ),
                });
            }
            ::cdc::__private::Ok(User {
                id: values[0usize].to_rust("id")?,
                name: values[1usize].to_rust("name")?,
                email: values[2usize].to_rust("email")?,
                rating: values[3usize].to_rust("score")?,
                avatar: values[4usize].to_rust("avatar")?,
                cached: ::core::default::Default::default(),
            })
        }
    }
};
