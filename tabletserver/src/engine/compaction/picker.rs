//! Which compaction to run next: a pure function of the tablet's shape.

use tabula_common::FileId;

/// When to merge and when to major-compact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickerOptions {
    /// A flush merges small SSTables into its output once the tablet has this many files.
    pub merge_trigger_files: usize,
    /// At most this many SSTables join a merging compaction.
    pub merge_width_files: usize,
    /// A major compaction runs once the tablet has this many SSTables.
    pub major_trigger_files: usize,
}

impl Default for PickerOptions {
    fn default() -> Self {
        PickerOptions {
            merge_trigger_files: 4,
            merge_width_files: 4,
            major_trigger_files: 12,
        }
    }
}

/// What the picker looks at.
#[derive(Debug, Clone, Default)]
pub struct PickerInput {
    /// The tablet's SSTables with their sizes, newest first.
    pub sstables: Vec<(FileId, u64)>,
    /// Frozen memtables waiting to be flushed.
    pub frozen_memtables: usize,
    /// Someone asked for a major compaction.
    pub major_requested: bool,
    /// The tablet is closed (split or unloaded): it takes no more writes, and its manifest is
    /// not rewritten by a major compaction nobody will read from.
    pub closed: bool,
}

/// The picker's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Nothing to do.
    Idle,
    /// Flush the oldest frozen memtable, merging these SSTables into the output (a minor
    /// compaction when empty, a merging compaction otherwise).
    Flush {
        /// SSTables to merge into the flush output.
        merge: Vec<FileId>,
    },
    /// Compact every SSTable into one.
    Major,
}

/// Decides the next compaction. Flushes come first (they free memory and unblock writers).
pub fn choose(input: &PickerInput, opts: &PickerOptions) -> Choice {
    if input.frozen_memtables > 0 {
        let merge = if input.sstables.len() + 1 >= opts.merge_trigger_files {
            let mut by_size = input.sstables.clone();
            by_size.sort_by_key(|(id, size)| (*size, *id));
            by_size
                .into_iter()
                .take(opts.merge_width_files.max(1))
                .map(|(id, _)| id)
                .collect()
        } else {
            Vec::new()
        };
        return Choice::Flush { merge };
    }
    if !input.closed
        && (input.major_requested && !input.sstables.is_empty()
            || input.sstables.len() >= opts.major_trigger_files)
    {
        return Choice::Major;
    }
    Choice::Idle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(sizes: &[u64]) -> Vec<(FileId, u64)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| (FileId(i as u128), *s))
            .collect()
    }

    #[test]
    fn flushes_first_merging_the_smallest_files_when_there_are_many() {
        let opts = PickerOptions::default();
        let few = PickerInput {
            sstables: tables(&[10, 20]),
            frozen_memtables: 1,
            ..Default::default()
        };
        assert_eq!(choose(&few, &opts), Choice::Flush { merge: vec![] });
        let many = PickerInput {
            sstables: tables(&[50, 10, 40, 30, 20, 60]),
            frozen_memtables: 2,
            major_requested: true,
            closed: false,
        };
        let want = vec![FileId(1), FileId(4), FileId(3), FileId(2)];
        assert_eq!(choose(&many, &opts), Choice::Flush { merge: want });
    }

    #[test]
    fn majors_on_request_or_when_files_pile_up() {
        let opts = PickerOptions::default();
        let idle = PickerInput {
            sstables: tables(&[1, 2]),
            ..Default::default()
        };
        assert_eq!(choose(&idle, &opts), Choice::Idle);
        let asked = PickerInput {
            major_requested: true,
            ..idle.clone()
        };
        assert_eq!(choose(&asked, &opts), Choice::Major);
        let empty = PickerInput {
            major_requested: true,
            ..Default::default()
        };
        assert_eq!(choose(&empty, &opts), Choice::Idle);
        let piled = PickerInput {
            sstables: tables(&[1; 12]),
            ..Default::default()
        };
        assert_eq!(choose(&piled, &opts), Choice::Major);
        for closed in [
            PickerInput {
                closed: true,
                ..asked.clone()
            },
            PickerInput {
                closed: true,
                ..piled.clone()
            },
        ] {
            assert_eq!(choose(&closed, &opts), Choice::Idle, "closed: {closed:?}");
        }
        let closed_flush = PickerInput {
            frozen_memtables: 1,
            closed: true,
            ..idle
        };
        assert_eq!(
            choose(&closed_flush, &opts),
            Choice::Flush { merge: vec![] },
            "a closed tablet still flushes what it holds"
        );
    }
}
