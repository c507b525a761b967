[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("StateMesh.Sqlite.Tests")]
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("StateMesh.Postgres.Tests")]
