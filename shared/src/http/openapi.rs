//! The OpenAPI 3.1 document, generated from the route and type definitions.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::{events, problem, system, triggers};
use crate::app::{TestRun, TriggerView};
use crate::domain::event::{Event, EventSource, EventStatus, EventView};
use crate::domain::lifecycle::EventState;
use crate::domain::schedule::Schedule;
use crate::domain::trigger::{Trigger, TriggerDefinition, TriggerKind, TriggerStatus};
use crate::domain::validation::FieldError;
use crate::ports::TriggerStats;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Event Trigger Platform", description = "Scheduled and API triggers with an exact event lifecycle."),
    paths(
        triggers::create, triggers::list, triggers::get, triggers::replace, triggers::delete,
        triggers::pause, triggers::resume, triggers::fire, triggers::test_stored,
        triggers::test_definition, events::list, events::get, events::stats,
        system::health, system::openapi,
    ),
    components(schemas(
        Trigger, TriggerView, TriggerDefinition, TriggerKind, TriggerStatus, Schedule, Event,
        EventView, EventSource, EventStatus, EventState, TriggerStats, TestRun, FieldError,
        problem::Problem, events::StatsResponse, system::HealthReport,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "triggers", description = "Define, change and fire triggers"),
        (name = "events", description = "The event log"),
        (name = "system", description = "Health and this document; no token needed"),
    )
)]
pub struct ApiDoc;
