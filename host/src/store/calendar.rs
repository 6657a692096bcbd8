//! A tenant's working calendar and its users' join dates: what targets need besides their
//! own definition (the rules are in [`crate::engine::calendar`]).

use std::collections::{BTreeSet, HashMap};

use jiff::civil::{Date, Weekday};
use uuid::Uuid;

use super::error::StoreError;
use super::types::{TenantId, UserId, now_ms};
use super::{BeginWrite, Store};
use crate::engine::WorkCalendar;
use crate::engine::calendar::{WEEKDAYS, parse_weekday, weekday_name};

/// A tenant's calendar as stored: the rules, and when and by whom they were last set
/// (`None` while the tenant runs on the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCalendar {
    /// The rules.
    pub calendar: WorkCalendar,
    /// Who set them last.
    pub updated_by: Option<UserId>,
    /// When, in milliseconds since the Unix epoch.
    pub updated_at_ms: Option<i64>,
}

type CalendarRow = (String, String, String, Uuid, i64);

fn calendar_from_row(row: CalendarRow) -> Result<StoredCalendar, StoreError> {
    let (week_start, working, holidays, by, at) = row;
    let corrupt = || StoreError::Corrupt { what: "tenant calendar" };
    let names: Vec<String> = serde_json::from_str(&working).map_err(|_| corrupt())?;
    let mut working_week = [false; 7];
    for name in names {
        working_week[parse_weekday(&name).ok_or_else(corrupt)?.to_monday_zero_offset() as usize] = true;
    }
    let days: Vec<String> = serde_json::from_str(&holidays).map_err(|_| corrupt())?;
    let holidays =
        days.iter().map(|d| d.parse::<Date>()).collect::<Result<BTreeSet<Date>, _>>().map_err(|_| corrupt())?;
    Ok(StoredCalendar {
        calendar: WorkCalendar { week_start: parse_weekday(&week_start).ok_or_else(corrupt)?, working_week, holidays },
        updated_by: Some(UserId::from_uuid(by)),
        updated_at_ms: Some(at),
    })
}

/// The working days of a calendar as stored: weekday names, Monday first.
fn working_names(calendar: &WorkCalendar) -> Vec<&'static str> {
    WEEKDAYS.into_iter().filter(|d| calendar.works_on(*d)).map(weekday_name).collect()
}

impl Store {
    /// The tenant's calendar, or the defaults if it never set one.
    pub async fn calendar(&self, tenant: TenantId) -> Result<StoredCalendar, StoreError> {
        let row: Option<CalendarRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT week_start, working_days, holidays, updated_by, updated_at FROM tenant_calendars \
                 WHERE tenant_id = $1",
            )
            .bind(tenant.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        match row {
            Some(row) => calendar_from_row(row),
            None => Ok(StoredCalendar { calendar: WorkCalendar::default(), updated_by: None, updated_at_ms: None }),
        }
    }

    /// Replaces the tenant's calendar (checked by the caller: at least one working day).
    pub async fn set_calendar(
        &self,
        tenant: TenantId,
        calendar: &WorkCalendar,
        by: UserId,
    ) -> Result<StoredCalendar, StoreError> {
        let working = serde_json::json!(working_names(calendar)).to_string();
        let days: Vec<String> = calendar.holidays.iter().map(Date::to_string).collect();
        let holidays = serde_json::json!(days).to_string();
        let at = now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO tenant_calendars (tenant_id, week_start, working_days, holidays, updated_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET \
                 week_start = excluded.week_start, working_days = excluded.working_days, \
                 holidays = excluded.holidays, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            )
            .bind(tenant.as_uuid())
            .bind(weekday_name(calendar.week_start))
            .bind(&working)
            .bind(&holidays)
            .bind(by.as_uuid())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(StoredCalendar { calendar: calendar.clone(), updated_by: Some(by), updated_at_ms: Some(at) })
    }

    /// Sets (or clears) the local date a user joined. [`StoreError::NotFound`] if the user
    /// is not in the tenant.
    pub async fn set_joined_on(
        &self,
        tenant: TenantId,
        user: UserId,
        joined_on: Option<Date>,
    ) -> Result<(), StoreError> {
        let updated = on_pool!(self, pool => {
            sqlx::query("UPDATE users SET joined_on = $3 WHERE tenant_id = $1 AND id = $2 AND NOT former")
                .bind(tenant.as_uuid())
                .bind(user.as_uuid())
                .bind(joined_on.map(|d| d.to_string()))
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 { Err(StoreError::NotFound { what: "user" }) } else { Ok(()) }
    }

    /// The join dates of the tenant's users who have one.
    pub async fn joined_on(&self, tenant: TenantId) -> Result<HashMap<UserId, Date>, StoreError> {
        let rows: Vec<(Uuid, String)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, joined_on FROM users WHERE tenant_id = $1 AND joined_on IS NOT NULL")
                .bind(tenant.as_uuid())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, day)| {
                let day = day.parse().map_err(|_| StoreError::Corrupt { what: "user join date" })?;
                Ok((UserId::from_uuid(id), day))
            })
            .collect()
    }
}

/// The stored name of a week start (targets keep theirs).
pub(crate) fn week_start_name(day: Weekday) -> &'static str {
    weekday_name(day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Currency;
    use crate::store::{MasterKey, NewTenant};

    #[tokio::test]
    async fn calendars_default_then_round_trip() {
        let store = Store::connect("sqlite::memory:", MasterKey::random()).await.unwrap();
        let created = store
            .create_tenant(&NewTenant {
                name: "a",
                timezone: "UTC",
                currency: Currency::parse("EUR").unwrap(),
                admin_name: "Admin",
                admin_email: "admin@example.com",
            })
            .await
            .unwrap();
        let (tenant, admin) = (created.tenant.id, created.admin.id);
        let stored = store.calendar(tenant).await.unwrap();
        assert_eq!((stored.calendar, stored.updated_at_ms), (WorkCalendar::default(), None));
        let cal = WorkCalendar {
            week_start: Weekday::Sunday,
            working_week: [true, true, true, true, false, false, true],
            holidays: ["2025-12-25".parse().unwrap(), "2025-01-01".parse().unwrap()].into_iter().collect(),
        };
        store.set_calendar(tenant, &cal, admin).await.unwrap();
        let stored = store.calendar(tenant).await.unwrap();
        assert_eq!((stored.calendar, stored.updated_by), (cal, Some(admin)));
        assert_eq!(store.joined_on(tenant).await.unwrap().len(), 0);
        store.set_joined_on(tenant, admin, Some("2025-06-16".parse().unwrap())).await.unwrap();
        assert_eq!(store.joined_on(tenant).await.unwrap()[&admin], "2025-06-16".parse::<Date>().unwrap());
        assert!(matches!(store.set_joined_on(tenant, UserId::new(), None).await, Err(StoreError::NotFound { .. })));
    }
}
