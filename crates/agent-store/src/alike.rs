//! The statements both stores run the same way, written once.
//!
//! [`SqliteStore`](crate::SqliteStore) and [`PostgresStore`](crate::PostgresStore) differ in
//! their SQL (each module's own constants: `?1` against `$1`, text times against the database
//! server's clock) and in their row types, not in how a statement of these is bound, run and
//! turned into the port's types. Those methods are expanded from here into each store's `impl`
//! block, where the constants and the row types named in the invocation resolve to the store's
//! own. A method whose statement takes other arguments on one store (a time SQLite is given and
//! PostgreSQL reads itself) is each store's own.
//!
//! A store using these has `fn pool(&self)`, `fn write_tx(&self)`, the dialect's own halves
//! `insert_fork` and `mark_interrupted`, a function `insert_events(conn, session_id, events)`
//! and the SQL constants the methods name.

/// The session statements alike on both stores: listing, releasing a lock, reading a cancel
/// request, a kept result, outputs and events, the history a fork copies, and the event of an
/// interrupted execution.
macro_rules! session_statements_alike {
    ($SessionRow:ty, $ListRow:ty, $EventRow:ty) => {
        async fn session_from_pool(&self, session_id: &str) -> Result<Option<SessionRecord>> {
            let row: Option<$SessionRow> = sqlx::query_as(SELECT_SESSION)
                .bind(session_id)
                .fetch_optional(self.pool())
                .await?;
            row.map(<$SessionRow>::into_record).transpose()
        }

        async fn list_sessions_impl(
            &self,
            limit: u32,
            status: Option<SessionStatus>,
        ) -> Result<Vec<SessionListItem>> {
            let rows: Vec<$ListRow> = match status {
                None => {
                    sqlx::query_as(LIST_SESSIONS)
                        .bind(i64::from(limit))
                        .fetch_all(self.pool())
                        .await?
                }
                Some(status) => {
                    sqlx::query_as(LIST_SESSIONS_BY_STATUS)
                        .bind(i64::from(limit))
                        .bind(status.as_str())
                        .fetch_all(self.pool())
                        .await?
                }
            };
            rows.into_iter().map(<$ListRow>::into_item).collect()
        }

        async fn list_sessions_page_impl(
            &self,
            offset: u32,
            limit: u32,
        ) -> Result<Vec<SessionListItem>> {
            let rows: Vec<$ListRow> = sqlx::query_as(LIST_SESSIONS_PAGE)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(self.pool())
                .await?;
            rows.into_iter().map(<$ListRow>::into_item).collect()
        }

        async fn release_lock_impl(&self, session_id: &str, owner: &str) -> Result<()> {
            sqlx::query(RELEASE_LOCK)
                .bind(session_id)
                .bind(owner)
                .execute(self.pool())
                .await?;
            Ok(())
        }

        async fn cancel_requested_impl(
            &self,
            session_id: &str,
            lease: &Lease,
        ) -> Result<Option<String>> {
            let reason: Option<Option<String>> = sqlx::query_scalar(CANCEL_REQUESTED)
                .bind(session_id)
                .bind(&lease.owner)
                .bind(lease.generation)
                .fetch_optional(self.pool())
                .await?;
            // Bounded again: a reason written by another node, another implementation or by
            // hand may be any length.
            Ok(reason.map(|r| bounded_cancel_reason(r.as_deref().unwrap_or_default()).to_owned()))
        }

        async fn kept_result_impl(&self, session_id: &str) -> Result<Option<(i64, String)>> {
            Ok(sqlx::query_as(SELECT_RESULT)
                .bind(session_id)
                .fetch_optional(self.pool())
                .await?)
        }

        async fn outputs_impl(&self, session_id: &str) -> Result<Vec<(i64, String)>> {
            Ok(sqlx::query_as(SELECT_OUTPUTS)
                .bind(session_id)
                .fetch_all(self.pool())
                .await?)
        }

        async fn events_impl(&self, session_id: &str) -> Result<Vec<StoredEvent>> {
            let rows: Vec<$EventRow> = sqlx::query_as(SELECT_EVENTS)
                .bind(session_id)
                .fetch_all(self.pool())
                .await?;
            rows.into_iter().map(<$EventRow>::into_event).collect()
        }

        async fn fork_session_impl(&self, fork: &ForkSession) -> Result<ForkOutcome> {
            let mut tx = self.write_tx().await?;
            let Some(row) = Self::insert_fork(&mut tx, fork).await? else {
                return Ok(ForkOutcome::NotFound);
            };
            sqlx::query(COPY_FORK_EVENTS)
                .bind(&fork.session_id)
                .bind(&fork.parent_session_id)
                .bind(fork.through_event_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(COPY_FORK_OUTPUTS)
                .bind(&fork.session_id)
                .bind(&fork.parent_session_id)
                .bind(fork.at_turn)
                .execute(&mut *tx)
                .await?;
            insert_events(
                &mut tx,
                &fork.session_id,
                std::slice::from_ref(&fork.child_event),
            )
            .await?;
            insert_events(
                &mut tx,
                &fork.parent_session_id,
                std::slice::from_ref(&fork.parent_event),
            )
            .await?;
            tx.commit().await?;
            Ok(ForkOutcome::Forked(Box::new(row.into_record()?)))
        }

        async fn interrupt_execution_impl(
            &self,
            session_id: &str,
            lease: &Lease,
            reason: &str,
        ) -> Result<bool> {
            let mut tx = self.write_tx().await?;
            let Some(turn) = Self::mark_interrupted(&mut tx, session_id, lease).await? else {
                return Ok(false);
            };
            insert_events(
                &mut tx,
                session_id,
                &[Event::session_interrupted(turn, reason)],
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(session_id, reason, "session marked interrupted");
            Ok(true)
        }
    };
}

/// The statements on requests in flight alike on both stores (naming a request's session,
/// forgetting a request).
macro_rules! request_statements_alike {
    () => {
        async fn name_request_session_impl(
            &self,
            key: &RequestKey,
            session_id: &str,
        ) -> Result<Option<String>> {
            let row: Option<(bool, Option<String>)> = sqlx::query_as(NAME_REQUEST_SESSION)
                .bind(&key.client_key)
                .bind(&key.request_id)
                .bind(session_id)
                .fetch_optional(self.pool())
                .await?;
            Ok(recorded_cancel(row))
        }

        async fn forget_request_impl(&self, key: &RequestKey) -> Result<()> {
            sqlx::query(FORGET_REQUEST)
                .bind(&key.client_key)
                .bind(&key.request_id)
                .execute(self.pool())
                .await?;
            Ok(())
        }
    };
}

pub(crate) use request_statements_alike;
pub(crate) use session_statements_alike;
