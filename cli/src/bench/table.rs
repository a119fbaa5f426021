//! Text every benchmark report shares: numbers with thousands separators and aligned tables.
//! Pure.

/// `x` rounded to a whole number with thousands separators: `1234567.8` -> `"1,234,568"`.
pub(super) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `rows` (the header first) as lines of columns padded to the widest cell and joined by two
/// spaces, trailing spaces trimmed. A column reads left to right if `left_aligned(column)`,
/// else its cells align right (numbers).
pub(super) fn render(rows: &[Vec<String>], left_aligned: impl Fn(usize) -> bool) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c).map(String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if left_aligned(c) {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[test]
    fn columns_pad_to_the_widest_cell() {
        let rows = vec![
            vec!["name".to_owned(), "n".to_owned(), "note".to_owned()],
            vec!["a".to_owned(), "1,000".to_owned(), String::new()],
        ];
        assert_eq!(
            render(&rows, |c| c != 1),
            "name      n  note\na     1,000\n"
        );
    }
}
