use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_session")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub did: String,
    pub client_id: String,
    pub client_auth: String,
    pub dpop_jkt: String,
    pub scope: String,
    pub device_id: Option<String>,
    /// Unique.
    pub code: String,
    /// Unique: the current access token's `jti`.
    pub token_id: String,
    /// Unique: the current refresh token's hash.
    pub refresh_hash: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
