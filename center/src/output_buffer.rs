//! The last output of one process, in memory: chunks in arrival order, bounded in bytes (the
//! oldest dropped first).

use nerve_proto::Stream;
use std::collections::VecDeque;

/// Default bound of the output kept in memory per process: 64 KiB.
pub const DEFAULT_OUTPUT_BYTES: usize = 64 * 1024;

/// Output chunks in arrival order, both streams, the oldest dropped past the bound.
#[derive(Debug, Default, Clone)]
pub struct OutputBuffer {
    chunks: VecDeque<(Stream, Vec<u8>)>,
    bytes: usize,
    truncated: bool,
}

impl OutputBuffer {
    /// Adds a chunk, dropping the oldest chunks while more than `cap` bytes are kept (a single
    /// chunk larger than `cap` keeps only its last `cap` bytes).
    pub fn push(&mut self, stream: Stream, data: &[u8], cap: usize) {
        if data.len() > cap {
            self.truncated = true;
        }
        let data = &data[data.len().saturating_sub(cap)..];
        self.bytes += data.len();
        self.chunks.push_back((stream, data.to_vec()));
        while self.bytes > cap {
            self.truncated = true;
            match self.chunks.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// True when output was dropped to stay within the bound.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The last `lines` lines of `stream` (or of both, interleaved as they arrived), as chunks.
    /// A last line without a newline counts as a line.
    pub fn tail(&self, lines: u32, stream: Option<Stream>) -> Vec<(Stream, Vec<u8>)> {
        let chunks: Vec<&(Stream, Vec<u8>)> = self
            .chunks
            .iter()
            .filter(|(s, _)| stream.is_none_or(|want| *s == want))
            .collect();
        let (chunk_index, offset) = tail_start(chunks.iter().map(|(_, d)| d.as_slice()), lines);
        chunks[chunk_index.min(chunks.len())..]
            .iter()
            .enumerate()
            .map(|(i, (s, d))| (*s, if i == 0 { d[offset..].to_vec() } else { d.clone() }))
            .filter(|(_, d)| !d.is_empty())
            .collect()
    }
}

/// Where the last `lines` lines start in a sequence of chunks: (chunk index, byte offset).
pub fn tail_start<'a>(
    chunks: impl DoubleEndedIterator<Item = &'a [u8]> + ExactSizeIterator,
    lines: u32,
) -> (usize, usize) {
    if lines == 0 {
        return (chunks.len(), 0);
    }
    let mut newlines = 0u32;
    let mut first = true;
    let count = chunks.len();
    for (rev_i, chunk) in chunks.rev().enumerate() {
        let i = count - 1 - rev_i;
        for pos in (0..chunk.len()).rev() {
            if chunk[pos] == b'\n' {
                // A newline that ends the whole output closes the last line; it does not start
                // one.
                if first && pos == chunk.len() - 1 {
                    first = false;
                    continue;
                }
                newlines += 1;
                if newlines == lines {
                    return (i, pos + 1);
                }
            }
            first = false;
        }
    }
    (0, 0)
}

/// Lines in some chunks of output (a last line without a newline counts).
pub fn count_lines(chunks: &[(Stream, Vec<u8>)]) -> usize {
    let bytes = chunks.iter().map(|(_, d)| d.len()).sum::<usize>();
    let newlines = chunks
        .iter()
        .map(|(_, d)| d.iter().filter(|b| **b == b'\n').count())
        .sum::<usize>();
    let ends_open = chunks
        .iter()
        .rev()
        .find(|(_, d)| !d.is_empty())
        .is_some_and(|(_, d)| d.last() != Some(&b'\n'));
    if bytes == 0 {
        0
    } else {
        newlines + usize::from(ends_open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(chunks: Vec<(Stream, Vec<u8>)>) -> String {
        chunks
            .into_iter()
            .map(|(_, d)| String::from_utf8(d).unwrap_or_default())
            .collect()
    }

    #[test]
    fn tail_counts_lines_across_chunks_and_streams() {
        let mut buf = OutputBuffer::default();
        buf.push(Stream::Stdout, b"1\n2\n", 1024);
        buf.push(Stream::Stderr, b"e1\n", 1024);
        buf.push(Stream::Stdout, b"3\n4", 1024);
        assert_eq!(text(buf.tail(2, None)), "3\n4");
        assert_eq!(text(buf.tail(3, None)), "e1\n3\n4");
        assert_eq!(text(buf.tail(10, None)), "1\n2\ne1\n3\n4");
        assert_eq!(text(buf.tail(1, Some(Stream::Stderr))), "e1\n");
        assert_eq!(text(buf.tail(2, Some(Stream::Stdout))), "3\n4");
        assert_eq!(text(buf.tail(0, None)), "");
        assert!(!buf.truncated());
    }

    #[test]
    fn a_trailing_newline_closes_the_last_line() {
        let mut buf = OutputBuffer::default();
        buf.push(Stream::Stdout, b"a\nb\nc\n", 1024);
        assert_eq!(text(buf.tail(1, None)), "c\n");
        assert_eq!(text(buf.tail(2, None)), "b\nc\n");
    }

    #[test]
    fn the_ring_keeps_at_most_its_bound() {
        let mut buf = OutputBuffer::default();
        for i in 0..100 {
            buf.push(Stream::Stdout, format!("{i:03}\n").as_bytes(), 16);
        }
        assert_eq!(text(buf.tail(100, None)), "096\n097\n098\n099\n");
        assert!(buf.truncated());
        buf.push(Stream::Stdout, &[b'x'; 40], 16);
        assert_eq!(text(buf.tail(1, None)), "x".repeat(16));
    }
}
