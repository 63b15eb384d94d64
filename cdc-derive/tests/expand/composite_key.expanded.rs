///Typed changes of table `order_line`, as [`OrderLine`] values.
type OrderLineChange = ::cdc::TypedChange<OrderLine>;
const _: () = {
    impl ::cdc::Cdc for OrderLine {
        const TABLE: ::cdc::TableDesc = ::cdc::TableDesc {
            name: ::cdc::__private::Cow::Borrowed("order_line"),
            columns: ::cdc::__private::Cow::Borrowed(
                &[
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("order_id"),
                        decl_type: ::cdc::__private::Cow::Borrowed("INTEGER"),
                        primary_key: 1u16,
                        not_null: true,
                        generated: false,
                    },
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("line"),
                        decl_type: ::cdc::__private::Cow::Borrowed("INTEGER"),
                        primary_key: 2u16,
                        not_null: true,
                        generated: false,
                    },
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("sku"),
                        decl_type: ::cdc::__private::Cow::Borrowed("TEXT"),
                        primary_key: 0u16,
                        not_null: true,
                        generated: false,
                    },
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("quantity"),
                        decl_type: ::cdc::__private::Cow::Borrowed("INTEGER"),
                        primary_key: 0u16,
                        not_null: false,
                        generated: false,
                    },
                    ::cdc::ColumnDesc {
                        name: ::cdc::__private::Cow::Borrowed("paid"),
                        decl_type: ::cdc::__private::Cow::Borrowed("INTEGER"),
                        primary_key: 0u16,
                        not_null: true,
                        generated: false,
                    },
                ],
            ),
            without_rowid: true,
            integer_key_not_rowid: false,
        };
        const CREATE_TRIGGERS: [&'static str; 3] = [
            "CREATE TRIGGER \"_cdc_insert_order_line\" AFTER INSERT ON \"order_line\" FOR EACH ROW BEGIN\n  INSERT INTO \"_cdc_log\"(kind, v0, v1, v2, v3, v4) VALUES(113180542058889, NEW.\"order_id\", NEW.\"line\", NEW.\"sku\", NEW.\"quantity\", NEW.\"paid\");\nEND",
            "CREATE TRIGGER \"_cdc_update_order_line\" AFTER UPDATE ON \"order_line\" FOR EACH ROW BEGIN\n  INSERT INTO \"_cdc_log\"(kind, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9) SELECT CASE WHEN \"order_line\".\"order_id\" IS NULL THEN 113180542058891 ELSE 113180542058890 END, OLD.\"order_id\", OLD.\"line\", OLD.\"sku\", OLD.\"quantity\", OLD.\"paid\", \"order_line\".\"order_id\", \"order_line\".\"line\", \"order_line\".\"sku\", \"order_line\".\"quantity\", \"order_line\".\"paid\" FROM (SELECT 1) LEFT JOIN \"order_line\" ON \"order_line\".\"order_id\" = NEW.\"order_id\" AND \"order_line\".\"line\" = NEW.\"line\";\nEND",
            "CREATE TRIGGER \"_cdc_delete_order_line\" AFTER DELETE ON \"order_line\" FOR EACH ROW BEGIN\n  INSERT INTO \"_cdc_log\"(kind, v0, v1, v2, v3, v4) VALUES(113180542058891, OLD.\"order_id\", OLD.\"line\", OLD.\"sku\", OLD.\"quantity\", OLD.\"paid\");\nEND",
        ];
        const RUST_TYPE: &'static str = "OrderLine";
        fn to_row(&self) -> ::cdc::Result<::cdc::__private::Vec<::cdc::Value>> {
            ::cdc::__private::Ok(
                ::cdc::__private::Vec::from([
                    ::cdc::Value::from_sql(&self.order_id, "order_id")?,
                    ::cdc::Value::from_sql(&self.line, "line")?,
                    ::cdc::Value::from_sql(&self.sku, "sku")?,
                    ::cdc::Value::from_sql(&self.quantity, "quantity")?,
                    ::cdc::Value::from_sql(&self.paid, "paid")?,
                ]),
            )
        }
        fn from_row(values: &[::cdc::Value]) -> ::cdc::Result<Self> {
            if values.len() != 5usize {
                return ::cdc::__private::Err(::cdc::Error::Convert {
                    column: ::cdc::__private::String::from("order_line"),
                    problem: ::cdc::__private::format!(
                        "expected {} values, got {}", 5usize, values.len()
                    ),
                });
            }
            ::cdc::__private::Ok(OrderLine {
                order_id: values[0usize].to_rust("order_id")?,
                line: values[1usize].to_rust("line")?,
                sku: values[2usize].to_rust("sku")?,
                quantity: values[3usize].to_rust("quantity")?,
                paid: values[4usize].to_rust("paid")?,
            })
        }
    }
};
