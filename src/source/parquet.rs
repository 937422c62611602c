//! Parquet reader (stub, being written).
use super::*;
pub struct ParquetSource;
impl ParquetSource {
    pub fn open(path: &Path, _columns: &[String]) -> Result<Self, SourceError> {
        Err(SourceError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }
}
impl Source for ParquetSource {
    fn headers(&self) -> &[String] {
        &[]
    }
    fn next_chunk(&mut self, _max_rows: usize) -> Result<Option<Chunk>, SourceError> {
        Ok(None)
    }
    fn bytes_read(&self) -> u64 {
        0
    }
}
