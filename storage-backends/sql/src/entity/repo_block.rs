use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "repo_block")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub did: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub cid: String,
    pub repo_rev: String,
    pub size: i32,
    pub content: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
