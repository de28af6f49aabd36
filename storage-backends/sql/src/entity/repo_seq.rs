use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "repo_seq")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub did: String,
    pub event_type: String,
    pub event: Vec<u8>,
    pub invalidated: bool,
    pub sequenced_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
