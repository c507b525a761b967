[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("StateMesh.Sqlite.Tests")]
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("StateMesh.Postgres.Tests")]
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("StateMesh.Redis.Tests")]
