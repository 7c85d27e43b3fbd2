"""Local stand-ins for AWS and RDS: a throwaway MariaDB with TLS and moto's AWS emulation."""
