[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("StateMesh.Sqlite.Tests")]
