//! Pages of a list, as EMQX gives them: `page` (from 1) and `limit`
//! (default 100, at most 10,000) in, `meta.{page, limit, count, hasnext}`
//! out.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100;
/// Largest `limit`.
pub const MAX_LIMIT: u64 = 10_000;
/// Largest `page`.
pub const MAX_PAGE: u64 = 1_000_000_000;

/// A query value given empty (`?clientid=`) counts as not given.
pub fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// `page` and `limit` query parameters.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1000000000, default = 1)]
    pub page: Option<u64>,
    /// Rows per page, 1 to 10000.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    pub limit: Option<u64>,
}

/// `meta` of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Meta {
    pub page: u64,
    pub limit: u64,
    /// Rows matching, over all pages.
    pub count: u64,
    /// A later page has rows.
    pub hasnext: bool,
}

/// A page of rows.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub meta: Meta,
}

impl PageParams {
    /// The page and limit asked for, checked.
    pub fn resolve(self) -> Result<(u64, u64), ApiError> {
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if page == 0 || page > MAX_PAGE {
            return Err(ApiError::bad_request(format!("page: must be 1 to {MAX_PAGE}")));
        }
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!("limit: must be 1 to {MAX_LIMIT}")));
        }
        Ok((page, limit))
    }
}

/// The rows of page `page` of `rows` (already filtered and sorted).
pub fn paginate<T>(rows: Vec<T>, page: u64, limit: u64) -> Page<T> {
    let count = rows.len() as u64;
    let start = (page - 1).saturating_mul(limit);
    let data: Vec<T> = rows
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    let hasnext = start.saturating_add(limit) < count;
    Page { data, meta: Meta { page, limit, count, hasnext } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_multiples_have_no_next_page() {
        let rows: Vec<u32> = (0..20).collect();
        let p1 = paginate(rows.clone(), 1, 10);
        assert_eq!((p1.data.len(), p1.meta.hasnext, p1.meta.count), (10, true, 20));
        let p2 = paginate(rows.clone(), 2, 10);
        assert_eq!((p2.data[0], p2.data.len(), p2.meta.hasnext), (10, 10, false));
        let p3 = paginate(rows, 3, 10);
        assert!(p3.data.is_empty() && !p3.meta.hasnext);
        assert!(paginate(Vec::<u8>::new(), u64::MAX, MAX_LIMIT).data.is_empty());
    }

    #[test]
    fn bounds() {
        assert!(PageParams { page: Some(0), limit: None }.resolve().is_err());
        assert!(PageParams { page: None, limit: Some(MAX_LIMIT + 1) }.resolve().is_err());
        assert_eq!(PageParams::default().resolve().unwrap(), (1, DEFAULT_LIMIT));
    }
}
