use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "record_blob")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub did: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub blob_cid: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub record_uri: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
