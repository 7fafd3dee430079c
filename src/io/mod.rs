//! Everything that touches the file system on frostline's behalf, and the promise it keeps:
//! nothing the user did not ask frostline to write is replaced or deleted, and a kill never
//! leaves half a file. [`outfolder`] claims and swaps whole output folders, [`fsutil`] writes
//! single files atomically, [`output`] writes embeddings and tables, [`format`] maps file
//! extensions to formats, and [`stale`] cleans up after killed runs.

pub(crate) mod format;
pub(crate) mod fsutil;
pub(crate) mod outfolder;
pub(crate) mod output;
pub(crate) mod stale;
