//! Application jobs: they combine the layers below (store, classify,
//! embed, …) for the front ends.

pub mod small_model;
