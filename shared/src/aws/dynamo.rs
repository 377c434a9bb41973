//! The store port on DynamoDB.
